//! The text forms of policies: Fabric's signature-policy syntax and the implicit-meta string.
//!
//! Signature policies are written the way Fabric's `peer` CLI and `configtx.yaml` write them:
//! `AND('DSOMSP.peer', OR('RetailerMSP.peer', 'CommunityMSP.peer'))`,
//! `OutOf(2, 'A.member', 'B.member', 'C.member')`. Fabric parses this with a general expression
//! evaluator and reports failures like "Unexpected end of expression"; this module is a small
//! recursive-descent parser instead, so every error carries the byte offset, line and column
//! where it went wrong and says what was expected and what was found.
//!
//! Accepted, as Fabric accepts it:
//! - operators `AND`/`And`/`and`, `OR`/`Or`/`or`, `OutOf`/`outof`/`OUTOF` (those exact
//!   spellings), each with at least one sub-policy;
//! - `OutOf(n, ...)` with `0 <= n <= count + 1`, where `count` is the number of sub-policies
//!   (`n = count + 1` is Fabric's way to write a policy no set of signatures satisfies, used to
//!   freeze a key); `n` may also be written quoted, `OutOf('2', ...)`;
//! - principals `'MSPID.role'` quoted with `'` (or `"`), the MSP id made of ASCII letters,
//!   digits, `.` and `-`, the role one of `member`, `admin`, `client`, `peer`, `orderer`;
//! - any whitespace between tokens, nesting to [`MAX_POLICY_DEPTH`] levels and at most
//!   [`MAX_POLICY_PRINCIPALS`] principals.
//!
//! Encoding follows Fabric's `policydsl.FromString` byte for byte: version 0; every principal
//! occurrence becomes its own `MSPPrincipal` (Fabric does not deduplicate); and principals are
//! numbered in the order Fabric's evaluator meets them, which is *post-order*: within a gate,
//! all nested gates are numbered first (left to right, recursively), then the gate's own
//! principals left to right. So `OR('A.member', AND('B.member', 'C.member'))` lists B, C, A and
//! its rule is `NOutOf(1, [SignedBy(2), NOutOf(2, [SignedBy(0), SignedBy(1)])])`, exactly as
//! Fabric's own tests pin it.

use std::fmt;

use gridledger_proto::common::{
    ImplicitMetaPolicy, MspPrincipal, MspRole, SignaturePolicy, SignaturePolicyEnvelope,
    implicit_meta_policy, msp_principal, msp_role::MspRoleType, signature_policy,
};
use prost::Message;

use super::{MAX_POLICY_DEPTH, MAX_POLICY_PRINCIPALS, PolicyError};

/// A syntax error in a policy string, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyParseError {
    /// Byte offset into the input (0-based) of the offending token.
    pub offset: usize,
    /// Line of `offset` (1-based).
    pub line: usize,
    /// Column of `offset` in characters (1-based).
    pub column: usize,
    /// What was wrong.
    pub kind: PolicyParseErrorKind,
}

impl fmt::Display for PolicyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 1 {
            write!(
                f,
                "policy syntax error at column {}: {}",
                self.column, self.kind
            )
        } else {
            write!(
                f,
                "policy syntax error at line {}, column {}: {}",
                self.line, self.column, self.kind
            )
        }
    }
}

impl PolicyParseError {
    fn at(src: &str, offset: usize, kind: PolicyParseErrorKind) -> Self {
        let offset = offset.min(src.len());
        let before = src.get(..offset).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        PolicyParseError {
            offset,
            line,
            column,
            kind,
        }
    }

    /// The offending line of `src` with a caret under the error, for terminal output:
    ///
    /// ```text
    /// AND('A.peer', 'B.pear')
    ///                   ^ unknown role 'pear' in principal 'B.pear': ...
    /// ```
    pub fn render(&self, src: &str) -> String {
        let line = src.lines().nth(self.line - 1).unwrap_or("");
        let pad = " ".repeat(self.column.saturating_sub(1));
        format!("{line}\n{pad}^ {}", self.kind)
    }
}

/// What kind of syntax error a [`PolicyParseError`] is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyParseErrorKind {
    /// Nothing but whitespace.
    #[error("empty policy: expected AND(...), OR(...) or OutOf(n, ...)")]
    EmptyInput,
    /// The input stopped in the middle of a policy.
    #[error("unexpected end of policy: expected {expected}")]
    UnexpectedEnd {
        /// What the parser was looking for.
        expected: &'static str,
    },
    /// A token that does not fit here.
    #[error("expected {expected}, found {found}")]
    Unexpected {
        /// What the parser was looking for.
        expected: &'static str,
        /// The text found instead.
        found: String,
    },
    /// A word followed by `(` that is not one of Fabric's operators.
    #[error(
        "unknown operator '{found}': expected AND, OR or OutOf \
         (accepted spellings: AND/And/and, OR/Or/or, OutOf/outof/OUTOF)"
    )]
    UnknownOperator {
        /// The word used as an operator.
        found: String,
    },
    /// The input ended before a `(` was closed.
    #[error("unbalanced parentheses: the '(' at column {open_column} is never closed")]
    UnclosedParen {
        /// Column (1-based, on its line) of the unclosed `(`.
        open_column: usize,
    },
    /// A `)` after the policy was complete.
    #[error("unbalanced parentheses: ')' without a matching '('")]
    UnmatchedCloseParen,
    /// Text after the end of a complete policy.
    #[error("unexpected {found} after the end of the policy")]
    TrailingInput {
        /// The text found after the policy.
        found: String,
    },
    /// A quoted string with no closing quote.
    #[error("unterminated quoted string: missing the closing {quote}")]
    UnterminatedQuote {
        /// The quote character that opened the string.
        quote: char,
    },
    /// A principal written without quotes.
    #[error("principal {found} must be quoted: write '{found}'")]
    UnquotedPrincipal {
        /// The unquoted text.
        found: String,
    },
    /// `''`.
    #[error("empty principal '': expected 'MSPID.role'")]
    EmptyPrincipal,
    /// A principal with no `.role` suffix.
    #[error(
        "principal '{principal}' has no role: expected 'MSPID.role' with role member, admin, \
         client, peer or orderer"
    )]
    MissingRole {
        /// The principal text.
        principal: String,
    },
    /// A principal whose role is not one of Fabric's five.
    #[error(
        "unknown role '{role}' in principal '{principal}': expected member, admin, client, \
         peer or orderer"
    )]
    UnknownRole {
        /// The role text.
        role: String,
        /// The principal text.
        principal: String,
    },
    /// A principal like `'.member'`.
    #[error("empty MSP id in principal '{principal}': expected 'MSPID.role'")]
    EmptyMspId {
        /// The principal text.
        principal: String,
    },
    /// An MSP id with a character Fabric's parser does not accept.
    #[error(
        "invalid character {ch:?} in the MSP id of principal '{principal}': MSP ids in policies \
         may contain only ASCII letters, digits, '.' and '-'"
    )]
    InvalidMspIdChar {
        /// The offending character.
        ch: char,
        /// The principal text.
        principal: String,
    },
    /// `AND()`, `OutOf(1)`.
    #[error("{operator} needs at least one sub-policy")]
    NoSubPolicies {
        /// The operator as written.
        operator: String,
    },
    /// The first argument of `OutOf` is not a whole number.
    #[error("OutOf needs a whole number as its first argument, found {found}")]
    InvalidCount {
        /// The text found instead.
        found: String,
    },
    /// `OutOf(n, ...)` with `n` outside `0..=count + 1`.
    #[error(
        "OutOf({n}, ...) has {sub_policies} sub-policies: n must be between 0 and {max} \
         (n = {max} is the deliberate never-satisfiable form)",
        max = sub_policies + 1
    )]
    CountOutOfRange {
        /// The requested count.
        n: i64,
        /// How many sub-policies follow it.
        sub_policies: usize,
    },
    /// A principal on its own, where Fabric requires an operator.
    #[error(
        "a policy must be an operator AND(...), OR(...) or OutOf(n, ...); write a single \
         principal as OR({found})"
    )]
    BarePrincipal {
        /// The principal as written.
        found: String,
    },
    /// Nesting deeper than [`MAX_POLICY_DEPTH`].
    #[error("policy nests deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// More than [`MAX_POLICY_PRINCIPALS`] principals.
    #[error("policy has more than {limit} principals")]
    TooManyPrincipals {
        /// The limit.
        limit: usize,
    },
    /// An implicit-meta rule other than `ANY`, `ALL` or `MAJORITY`.
    #[error("unknown implicit meta rule '{found}': expected ANY, ALL or MAJORITY")]
    UnknownImplicitMetaRule {
        /// The rule as written.
        found: String,
    },
    /// An implicit-meta string without a sub-policy name.
    #[error("implicit meta policy needs a sub-policy name, e.g. 'MAJORITY Admins'")]
    MissingSubPolicy,
}

/// A parsed policy expression, before it is numbered and encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Gate(Gate),
    Principal(MspRole),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Gate {
    /// How many of `args` must be satisfied.
    n: i32,
    args: Vec<Expr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    And,
    Or,
    OutOf,
}

impl Operator {
    fn from_word(word: &str) -> Option<Operator> {
        match word {
            "AND" | "And" | "and" => Some(Operator::And),
            "OR" | "Or" | "or" => Some(Operator::Or),
            "OutOf" | "outof" | "OUTOF" => Some(Operator::OutOf),
            _ => None,
        }
    }
}

/// The five role names of Fabric's policy syntax, in `MSPRole.MSPRoleType` terms.
pub(crate) fn role_from_name(name: &str) -> Option<MspRoleType> {
    match name {
        "member" => Some(MspRoleType::Member),
        "admin" => Some(MspRoleType::Admin),
        "client" => Some(MspRoleType::Client),
        "peer" => Some(MspRoleType::Peer),
        "orderer" => Some(MspRoleType::Orderer),
        _ => None,
    }
}

/// The policy-syntax name of a role (`member`, `admin`, ...).
pub(crate) fn role_name(role: MspRoleType) -> &'static str {
    match role {
        MspRoleType::Member => "member",
        MspRoleType::Admin => "admin",
        MspRoleType::Client => "client",
        MspRoleType::Peer => "peer",
        MspRoleType::Orderer => "orderer",
    }
}

fn is_msp_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-'
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    principals: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, offset: usize, kind: PolicyParseErrorKind) -> PolicyParseError {
        PolicyParseError::at(self.src, offset, kind)
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.src.get(self.pos..).and_then(|s| s.chars().next()) {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    /// The run of word characters starting at `at` (possibly empty).
    fn word_at(&self, at: usize) -> &'a str {
        let bytes = self.src.as_bytes();
        let mut end = at;
        while end < bytes.len() && is_word_byte(bytes[end]) {
            end += 1;
        }
        // Word bytes are ASCII, so both ends are char boundaries.
        self.src.get(at..end).unwrap_or("")
    }

    /// A short description of the token at `at`, for "found ..." messages.
    fn describe(&self, at: usize) -> String {
        let rest = self.src.get(at..).unwrap_or("");
        match rest.chars().next() {
            None => "the end of the policy".to_string(),
            Some(c) if c.is_ascii() && is_word_byte(c as u8) => format!("'{}'", self.word_at(at)),
            Some(q @ ('\'' | '"')) => {
                let body: String = rest[1..].chars().take_while(|&c| c != q).take(40).collect();
                format!("{q}{body}{q}")
            }
            Some(c) => format!("{c:?}"),
        }
    }

    fn parse_policy(&mut self) -> Result<Gate, PolicyParseError> {
        self.skip_ws();
        match self.peek() {
            None => return Err(self.err(self.pos, PolicyParseErrorKind::EmptyInput)),
            Some(b'\'' | b'"') => {
                let at = self.pos;
                let found = self.describe(at);
                return Err(self.err(at, PolicyParseErrorKind::BarePrincipal { found }));
            }
            _ => {}
        }
        let gate = self.parse_gate(1)?;
        self.skip_ws();
        match self.peek() {
            None => Ok(gate),
            Some(b')') => Err(self.err(self.pos, PolicyParseErrorKind::UnmatchedCloseParen)),
            Some(_) => {
                let found = self.describe(self.pos);
                Err(self.err(self.pos, PolicyParseErrorKind::TrailingInput { found }))
            }
        }
    }

    /// Parses `OP(args)` at the current position (whitespace already skipped).
    fn parse_gate(&mut self, depth: usize) -> Result<Gate, PolicyParseError> {
        let start = self.pos;
        let word = self.word_at(start);
        if word.is_empty() {
            let found = self.describe(start);
            return Err(self.err(
                start,
                PolicyParseErrorKind::Unexpected {
                    expected: "an operator AND, OR or OutOf",
                    found,
                },
            ));
        }
        let Some(op) = Operator::from_word(word) else {
            let found = word.to_string();
            return Err(self.err(start, PolicyParseErrorKind::UnknownOperator { found }));
        };
        if depth > MAX_POLICY_DEPTH {
            return Err(self.err(
                start,
                PolicyParseErrorKind::TooDeep {
                    limit: MAX_POLICY_DEPTH,
                },
            ));
        }
        self.pos += word.len();
        self.skip_ws();
        match self.peek() {
            Some(b'(') => {}
            None => {
                return Err(self.err(
                    self.pos,
                    PolicyParseErrorKind::UnexpectedEnd {
                        expected: "'(' after the operator",
                    },
                ));
            }
            Some(_) => {
                let found = self.describe(self.pos);
                return Err(self.err(
                    self.pos,
                    PolicyParseErrorKind::Unexpected {
                        expected: "'(' after the operator",
                        found,
                    },
                ));
            }
        }
        let open = self.pos;
        self.pos += 1;

        let mut count: Option<(i64, usize)> = None;
        if op == Operator::OutOf {
            self.skip_ws();
            let count_at = self.pos;
            if self.peek() == Some(b')') {
                return Err(self.err(
                    count_at,
                    PolicyParseErrorKind::NoSubPolicies {
                        operator: format!("{word}(n, ...)"),
                    },
                ));
            }
            count = Some((self.parse_count()?, count_at));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {
                    return Err(self.err(
                        self.pos,
                        PolicyParseErrorKind::NoSubPolicies {
                            operator: format!("{word}(n, ...)"),
                        },
                    ));
                }
                None => return Err(self.unclosed(open)),
                Some(_) => {
                    let found = self.describe(self.pos);
                    return Err(self.err(
                        self.pos,
                        PolicyParseErrorKind::Unexpected {
                            expected: "',' after the OutOf count",
                            found,
                        },
                    ));
                }
            }
        }

        let mut args = Vec::new();
        loop {
            self.skip_ws();
            if args.is_empty() && op != Operator::OutOf && self.peek() == Some(b')') {
                return Err(self.err(
                    self.pos,
                    PolicyParseErrorKind::NoSubPolicies {
                        operator: format!("{word}(...)"),
                    },
                ));
            }
            if self.peek().is_none() && !args.is_empty() {
                return Err(self.unclosed(open));
            }
            args.push(self.parse_expr(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {
                    self.pos += 1;
                    break;
                }
                None => return Err(self.unclosed(open)),
                Some(_) => {
                    let found = self.describe(self.pos);
                    return Err(self.err(
                        self.pos,
                        PolicyParseErrorKind::Unexpected {
                            expected: "',' or ')'",
                            found,
                        },
                    ));
                }
            }
        }

        // Only OutOf has a written count (and it always has one); AND and OR imply theirs.
        let n = match count {
            Some((n, at)) => {
                if n < 0 || n > args.len() as i64 + 1 {
                    return Err(self.err(
                        at,
                        PolicyParseErrorKind::CountOutOfRange {
                            n,
                            sub_policies: args.len(),
                        },
                    ));
                }
                n
            }
            None if op == Operator::And => args.len() as i64,
            None => 1,
        };
        // Every argument holds at least one principal, so `args.len()` is at most
        // MAX_POLICY_PRINCIPALS and `n` at most one more: far below i32::MAX.
        let n = i32::try_from(n).expect("gate count is bounded by the principal limit");
        Ok(Gate { n, args })
    }

    fn unclosed(&self, open: usize) -> PolicyParseError {
        let open_column =
            PolicyParseError::at(self.src, open, PolicyParseErrorKind::EmptyInput).column;
        self.err(
            self.src.len(),
            PolicyParseErrorKind::UnclosedParen { open_column },
        )
    }

    /// Parses one argument of a gate: a quoted principal or a nested gate.
    fn parse_expr(&mut self, depth: usize) -> Result<Expr, PolicyParseError> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            None => Err(self.err(
                at,
                PolicyParseErrorKind::UnexpectedEnd {
                    expected: "a principal like 'Org1MSP.member' or a nested AND, OR or OutOf",
                },
            )),
            Some(b'\'' | b'"') => self.parse_principal().map(Expr::Principal),
            Some(b) if is_word_byte(b) => {
                let word = self.word_at(at);
                let mut look = at + word.len();
                while self
                    .src
                    .as_bytes()
                    .get(look)
                    .is_some_and(|b| b.is_ascii_whitespace())
                {
                    look += 1;
                }
                if self.src.as_bytes().get(look) == Some(&b'(') {
                    self.parse_gate(depth + 1).map(Expr::Gate)
                } else if word.contains('.') {
                    let found = word.to_string();
                    Err(self.err(at, PolicyParseErrorKind::UnquotedPrincipal { found }))
                } else {
                    Err(self.err(
                        at,
                        PolicyParseErrorKind::Unexpected {
                            expected: "a quoted principal like 'Org1MSP.member' or a nested AND, \
                                       OR or OutOf",
                            found: format!("'{word}'"),
                        },
                    ))
                }
            }
            Some(_) => {
                let found = self.describe(at);
                Err(self.err(
                    at,
                    PolicyParseErrorKind::Unexpected {
                        expected: "a quoted principal like 'Org1MSP.member' or a nested AND, OR \
                                   or OutOf",
                        found,
                    },
                ))
            }
        }
    }

    /// Reads a quoted string at the current position; returns its body and the body's offset.
    fn quoted(&mut self) -> Result<(&'a str, usize), PolicyParseError> {
        let start = self.pos;
        let quote = self.peek().map_or('\'', char::from);
        let body_start = start + 1;
        let rest = self.src.get(body_start..).unwrap_or("");
        let Some(len) = rest.find(quote) else {
            return Err(self.err(start, PolicyParseErrorKind::UnterminatedQuote { quote }));
        };
        self.pos = body_start + len + 1;
        Ok((&rest[..len], body_start))
    }

    fn parse_principal(&mut self) -> Result<MspRole, PolicyParseError> {
        let start = self.pos;
        let (body, body_at) = self.quoted()?;
        if body.is_empty() {
            return Err(self.err(start, PolicyParseErrorKind::EmptyPrincipal));
        }
        let principal = body.to_string();
        let Some((msp_id, role)) = body.rsplit_once('.') else {
            return Err(self.err(body_at, PolicyParseErrorKind::MissingRole { principal }));
        };
        if msp_id.is_empty() {
            return Err(self.err(body_at, PolicyParseErrorKind::EmptyMspId { principal }));
        }
        if let Some((i, ch)) = msp_id.char_indices().find(|&(_, c)| !is_msp_id_char(c)) {
            return Err(self.err(
                body_at + i,
                PolicyParseErrorKind::InvalidMspIdChar { ch, principal },
            ));
        }
        let Some(role_type) = role_from_name(role) else {
            let role = role.to_string();
            return Err(self.err(
                body_at + msp_id.len() + 1,
                PolicyParseErrorKind::UnknownRole { role, principal },
            ));
        };
        self.principals += 1;
        if self.principals > MAX_POLICY_PRINCIPALS {
            return Err(self.err(
                start,
                PolicyParseErrorKind::TooManyPrincipals {
                    limit: MAX_POLICY_PRINCIPALS,
                },
            ));
        }
        Ok(MspRole {
            msp_identifier: msp_id.to_string(),
            role: role_type as i32,
        })
    }

    /// The first argument of `OutOf`: digits, optionally signed, optionally quoted.
    fn parse_count(&mut self) -> Result<i64, PolicyParseError> {
        let at = self.pos;
        let (text, text_at) = match self.peek() {
            Some(b'\'' | b'"') => self.quoted()?,
            _ => {
                let bytes = self.src.as_bytes();
                let mut end = at;
                if matches!(bytes.get(end), Some(b'-' | b'+')) {
                    end += 1;
                }
                while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
                self.pos = end;
                (self.src.get(at..end).unwrap_or(""), at)
            }
        };
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            let found = if text.is_empty() {
                self.describe(at)
            } else {
                format!("'{text}'")
            };
            return Err(self.err(text_at, PolicyParseErrorKind::InvalidCount { found }));
        }
        text.parse::<i64>().map_err(|_| {
            self.err(
                text_at,
                PolicyParseErrorKind::InvalidCount {
                    found: format!("'{text}' (too large)"),
                },
            )
        })
    }
}

/// Numbers principals and builds rules the way Fabric's `FromString` does (see the module doc).
struct Encoder {
    identities: Vec<MspPrincipal>,
}

impl Encoder {
    fn encode_gate(&mut self, gate: &Gate) -> SignaturePolicy {
        let mut rules: Vec<Option<SignaturePolicy>> = vec![None; gate.args.len()];
        for (slot, arg) in rules.iter_mut().zip(&gate.args) {
            if let Expr::Gate(inner) = arg {
                *slot = Some(self.encode_gate(inner));
            }
        }
        for (slot, arg) in rules.iter_mut().zip(&gate.args) {
            if let Expr::Principal(role) = arg {
                let index = i32::try_from(self.identities.len())
                    .expect("principal count is bounded by MAX_POLICY_PRINCIPALS");
                self.identities.push(MspPrincipal {
                    principal_classification: msp_principal::Classification::Role as i32,
                    principal: role.encode_to_vec(),
                });
                *slot = Some(signed_by(index));
            }
        }
        n_out_of(gate.n, rules.into_iter().flatten().collect())
    }
}

/// `SignaturePolicy{signed_by: index}`.
pub(crate) fn signed_by(index: i32) -> SignaturePolicy {
    SignaturePolicy {
        r#type: Some(signature_policy::Type::SignedBy(index)),
    }
}

/// `SignaturePolicy{n_out_of: {n, rules}}`.
pub(crate) fn n_out_of(n: i32, rules: Vec<SignaturePolicy>) -> SignaturePolicy {
    SignaturePolicy {
        r#type: Some(signature_policy::Type::NOutOf(signature_policy::NOutOf {
            n,
            rules,
        })),
    }
}

/// Parses Fabric's signature-policy syntax into the `SignaturePolicyEnvelope` Fabric's
/// `policydsl.FromString` would produce for the same string (see the module doc for the layout).
pub fn parse(src: &str) -> Result<SignaturePolicyEnvelope, PolicyParseError> {
    let mut parser = Parser {
        src,
        pos: 0,
        principals: 0,
    };
    let gate = parser.parse_policy()?;
    let mut encoder = Encoder {
        identities: Vec::new(),
    };
    let rule = encoder.encode_gate(&gate);
    Ok(SignaturePolicyEnvelope {
        version: 0,
        rule: Some(rule),
        identities: encoder.identities,
    })
}

/// Renders a signature policy back to Fabric's syntax: `OR` for an `NOutOf` that needs one of
/// its rules, `AND` for one that needs all of them, `OutOf(n, ...)` otherwise; a lone
/// principal at the top (a bare `SignedBy`, which the syntax cannot write) as `OR(principal)`.
///
/// Fails for policies the syntax cannot express: principals other than `ROLE`, an `NOutOf`
/// without rules or with `n` outside `0..=rules + 1`, or MSP ids the syntax does not accept.
/// Parsing the result gives back an equivalent envelope (byte-identical when `env` itself came
/// from [`parse`]).
pub fn to_policy_string(env: &SignaturePolicyEnvelope) -> Result<String, PolicyError> {
    let rule = env.rule.as_ref().ok_or(PolicyError::MissingRule)?;
    let mut out = String::new();
    // The syntax has no bare principal at the top (`parse` refuses one): a lone `SignedBy`
    // is written as the one-of-one gate that means the same.
    let bare = matches!(rule.r#type, Some(signature_policy::Type::SignedBy(_)));
    if bare {
        out.push_str("OR(");
    }
    render_rule(rule, &env.identities, 1, &mut out)?;
    if bare {
        out.push(')');
    }
    Ok(out)
}

fn render_rule(
    rule: &SignaturePolicy,
    identities: &[MspPrincipal],
    depth: usize,
    out: &mut String,
) -> Result<(), PolicyError> {
    if depth > MAX_POLICY_DEPTH {
        return Err(PolicyError::TooDeep {
            limit: MAX_POLICY_DEPTH,
        });
    }
    match &rule.r#type {
        None => Err(PolicyError::EmptyRule),
        Some(signature_policy::Type::SignedBy(index)) => {
            let principal = usize::try_from(*index)
                .ok()
                .and_then(|i| identities.get(i))
                .ok_or(PolicyError::IdentityIndexOutOfRange {
                    index: *index,
                    count: identities.len(),
                })?;
            out.push_str(&render_principal(*index, principal)?);
            Ok(())
        }
        Some(signature_policy::Type::NOutOf(gate)) => {
            let len = gate.rules.len();
            if len == 0 {
                return Err(PolicyError::NotExpressible {
                    reason: format!(
                        "NOutOf({}) has no rules; the syntax needs at least one",
                        gate.n
                    ),
                });
            }
            if gate.n < 0 || gate.n as usize > len + 1 {
                return Err(PolicyError::NotExpressible {
                    reason: format!(
                        "NOutOf({}) over {len} rules; the syntax accepts n from 0 to {}",
                        gate.n,
                        len + 1
                    ),
                });
            }
            // A single rule needing one is written OR, the configtx.yaml idiom; AND would
            // encode to the same bytes.
            if gate.n == 1 {
                out.push_str("OR(");
            } else if gate.n as usize == len {
                out.push_str("AND(");
            } else {
                out.push_str(&format!("OutOf({}, ", gate.n));
            }
            for (i, sub) in gate.rules.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_rule(sub, identities, depth + 1, out)?;
            }
            out.push(')');
            Ok(())
        }
    }
}

fn render_principal(index: i32, principal: &MspPrincipal) -> Result<String, PolicyError> {
    if principal.principal_classification != msp_principal::Classification::Role as i32 {
        let class = msp_principal::Classification::try_from(principal.principal_classification)
            .map_or_else(
                |_| principal.principal_classification.to_string(),
                |c| c.as_str_name().to_string(),
            );
        return Err(PolicyError::NotExpressible {
            reason: format!(
                "identity {index} is a {class} principal; the syntax has only 'MSPID.role'"
            ),
        });
    }
    let role = MspRole::decode(principal.principal.as_slice())
        .map_err(|source| PolicyError::UndecodablePrincipal { index, source })?;
    let role_type = MspRoleType::try_from(role.role).map_err(|_| PolicyError::UnknownRoleType {
        index,
        role: role.role,
    })?;
    let msp_id = &role.msp_identifier;
    if msp_id.is_empty() || !msp_id.chars().all(is_msp_id_char) {
        return Err(PolicyError::NotExpressible {
            reason: format!(
                "identity {index} has MSP id {msp_id:?}, which the syntax cannot write"
            ),
        });
    }
    Ok(format!("'{msp_id}.{}'", role_name(role_type)))
}

/// Parses the implicit-meta string form used in `configtx.yaml`: `"<RULE> <SubPolicy>"` with
/// rule `ANY`, `ALL` or `MAJORITY` (upper case, as Fabric requires), e.g. `"MAJORITY Admins"`.
pub fn parse_implicit_meta(src: &str) -> Result<ImplicitMetaPolicy, PolicyParseError> {
    let mut tokens = Vec::new();
    let mut rest_at = 0;
    for (i, c) in src.char_indices() {
        let ws = c.is_whitespace();
        match (ws, rest_at <= i) {
            (false, true) => {
                let end = src[i..]
                    .find(char::is_whitespace)
                    .map_or(src.len(), |e| i + e);
                tokens.push((i, &src[i..end]));
                rest_at = end;
            }
            _ => continue,
        }
    }
    let err = |at, kind| PolicyParseError::at(src, at, kind);
    let Some(&(rule_at, rule_word)) = tokens.first() else {
        return Err(err(0, PolicyParseErrorKind::EmptyInput));
    };
    let rule = match rule_word {
        "ANY" => implicit_meta_policy::Rule::Any,
        "ALL" => implicit_meta_policy::Rule::All,
        "MAJORITY" => implicit_meta_policy::Rule::Majority,
        other => {
            let found = other.to_string();
            return Err(err(
                rule_at,
                PolicyParseErrorKind::UnknownImplicitMetaRule { found },
            ));
        }
    };
    let Some(&(_, sub_policy)) = tokens.get(1) else {
        return Err(err(src.len(), PolicyParseErrorKind::MissingSubPolicy));
    };
    if let Some(&(extra_at, extra)) = tokens.get(2) {
        let found = format!("'{extra}'");
        return Err(err(extra_at, PolicyParseErrorKind::TrailingInput { found }));
    }
    Ok(ImplicitMetaPolicy {
        sub_policy: sub_policy.to_string(),
        rule: rule as i32,
    })
}

/// Renders an implicit-meta policy in its string form, e.g. `MAJORITY Admins`.
pub fn implicit_meta_to_string(policy: &ImplicitMetaPolicy) -> String {
    let rule = implicit_meta_policy::Rule::try_from(policy.rule).map_or_else(
        |_| format!("RULE({})", policy.rule),
        |r| r.as_str_name().to_string(),
    );
    format!("{rule} {}", policy.sub_policy)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports failure
mod tests {
    use super::*;

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

    fn parse_err(src: &str) -> PolicyParseError {
        match parse(src) {
            Ok(env) => panic!("{src:?} parsed unexpectedly: {env:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn fabric_complex1_numbers_nested_gates_first() {
        // Fabric's TestComplex1 pins this exact layout.
        let env = parse("OR('A.member', AND('B.member', 'C.member'))").unwrap();
        assert_eq!(
            env.identities,
            vec![
                role("B", MspRoleType::Member),
                role("C", MspRoleType::Member),
                role("A", MspRoleType::Member)
            ]
        );
        assert_eq!(
            env.rule,
            Some(n_out_of(
                1,
                vec![signed_by(2), n_out_of(2, vec![signed_by(0), signed_by(1)])]
            ))
        );
    }

    #[test]
    fn repeated_principals_are_not_deduplicated() {
        let env = parse("OutOf(2, 'A.member', 'A.member')").unwrap();
        assert_eq!(
            env.identities,
            vec![
                role("A", MspRoleType::Member),
                role("A", MspRoleType::Member)
            ]
        );
        assert_eq!(
            env.rule,
            Some(n_out_of(2, vec![signed_by(0), signed_by(1)]))
        );
    }

    #[test]
    fn operator_spellings_follow_fabric() {
        for ok in [
            "and('A.peer')",
            "And('A.peer')",
            "or('A.peer')",
            "OUTOF(1, 'A.peer')",
            "outof(1,'A.peer')",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        let e = parse_err("aNd('A.peer')");
        assert_eq!(e.offset, 0);
        assert!(
            matches!(e.kind, PolicyParseErrorKind::UnknownOperator { ref found } if found == "aNd")
        );
    }

    #[test]
    fn msp_ids_with_dots_and_dashes() {
        let env = parse("OR('MSP.WITH.DOTS.member', 'MSP-WITH-DASHES.orderer')").unwrap();
        assert_eq!(
            env.identities,
            vec![
                role("MSP.WITH.DOTS", MspRoleType::Member),
                role("MSP-WITH-DASHES", MspRoleType::Orderer)
            ]
        );
    }

    #[test]
    fn quoted_count_and_extremes_are_accepted() {
        let env = parse("OutOf('1', 'A.member', 'B.member')").unwrap();
        assert_eq!(
            env.rule,
            Some(n_out_of(1, vec![signed_by(0), signed_by(1)]))
        );
        assert!(parse("OutOf(0, 'A.member', 'B.member')").is_ok());
        let never = parse("OutOf(3, 'A.member', 'B.member')").unwrap();
        assert_eq!(
            never.rule,
            Some(n_out_of(3, vec![signed_by(0), signed_by(1)]))
        );
    }

    #[test]
    fn multi_line_errors_report_line_and_column() {
        let e = parse_err("OR(\n  'A.member',\n  'B.membr'\n)");
        assert_eq!((e.line, e.column), (3, 6));
        assert!(
            matches!(e.kind, PolicyParseErrorKind::UnknownRole { ref role, .. } if role == "membr")
        );
        assert!(
            e.to_string()
                .starts_with("policy syntax error at line 3, column 6: unknown role 'membr'")
        );
    }

    #[test]
    fn render_points_at_the_column() {
        let src = "AND('A.peer', 'B.pear')";
        let e = parse_err(src);
        assert_eq!(
            e.render(src),
            format!("{src}\n{}^ {}", " ".repeat(17), e.kind)
        );
    }

    #[test]
    fn implicit_meta_round_trip() {
        let p = parse_implicit_meta("MAJORITY Admins").unwrap();
        assert_eq!(p.rule, implicit_meta_policy::Rule::Majority as i32);
        assert_eq!(p.sub_policy, "Admins");
        assert_eq!(implicit_meta_to_string(&p), "MAJORITY Admins");
        let e = parse_implicit_meta("Majority Admins").unwrap_err();
        assert_eq!(e.offset, 0);
        let e = parse_implicit_meta("ANY Readers Writers").unwrap_err();
        assert_eq!(e.offset, 12);
        let e = parse_implicit_meta("ALL").unwrap_err();
        assert_eq!(e.kind, PolicyParseErrorKind::MissingSubPolicy);
        assert_eq!(
            parse_implicit_meta("  ").unwrap_err().kind,
            PolicyParseErrorKind::EmptyInput
        );
    }
}
