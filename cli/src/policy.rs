//! `gridledger policy explain`: evaluates a signature policy against a hypothetical set of
//! signers (`MSP:role`) and prints the policy engine's evaluation tree — a way to see, before
//! collecting signatures, which combinations of organizations satisfy a policy.
//!
//! Each signer is a certificate issued on the spot by a throwaway CA of its MSP, with the
//! NodeOU of its role, and validated by an MSP built like any channel MSP; so what is printed
//! is exactly what the channel's policy engine would decide for real signers in those roles.

use anyhow::{Context, bail};
use clap::Subcommand;
use gridledger_channels::policy::{CompiledSignaturePolicy, VerifiedSigners, parse};
use gridledger_identity::material::{CertificateAuthority, LeafSpec, Seed};
use gridledger_identity::{Msp, MspManager, Role, serialize_identity};
use gridledger_proto::msp as pb;
use std::collections::BTreeMap;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print a signature policy's evaluation tree for a set of signers, and whether it is
    /// satisfied (exit status 0 when satisfied, 1 when not).
    Explain {
        /// A signature policy, e.g. "OutOf(2,'A.member','B.member','C.member')".
        #[arg(long)]
        policy: String,
        /// The signers, comma-separated `MSP:role` (role: member, admin, client, peer, orderer;
        /// a member signs with a client certificate). Empty for no signers.
        #[arg(long, value_delimiter = ',', default_value = "")]
        signers: Vec<String>,
    },
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Explain { policy, signers } => {
            let (text, satisfied) = explain(&policy, &signers, crate::now_unix_secs())?;
            crate::print_out(&text)?;
            if !satisfied {
                bail!("the policy is not satisfied by these signers");
            }
            Ok(())
        }
    }
}

/// The role a `MSP:role` signer spec names.
fn role_of(spec: &str, name: &str) -> anyhow::Result<Role> {
    Ok(match name {
        "member" | "client" => Role::Client,
        "admin" => Role::Admin,
        "peer" => Role::Peer,
        "orderer" => Role::Orderer,
        other => {
            bail!("signer {spec:?}: unknown role {other:?} (member, admin, client, peer, orderer)")
        }
    })
}

/// The evaluation tree of `policy` for `signers` (`MSP:role`) at `now`, and the verdict.
pub(crate) fn explain(
    policy: &str,
    signers: &[String],
    now: i64,
) -> anyhow::Result<(String, bool)> {
    let envelope = parse(policy).map_err(|e| anyhow::anyhow!("{}", e.render(policy)))?;
    let compiled = CompiledSignaturePolicy::compile(&envelope)
        .with_context(|| format!("policy {policy:?}"))?;
    let mut wanted: Vec<(String, Role)> = Vec::new();
    for spec in signers.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (msp_id, role) = spec
            .split_once(':')
            .with_context(|| format!("signer {spec:?} is not MSP:role"))?;
        if msp_id.is_empty() {
            bail!("signer {spec:?} names no MSP");
        }
        wanted.push((msp_id.to_string(), role_of(spec, role)?));
    }

    let (not_before, not_after) = (now - 3_600, now + 3_600);
    let seed = Seed::from_text("gridledger policy explain");
    let mut cas: BTreeMap<&str, CertificateAuthority> = BTreeMap::new();
    for (msp_id, _) in &wanted {
        if !cas.contains_key(msp_id.as_str()) {
            let ca = CertificateAuthority::new_root(&seed, msp_id, "ca", not_before, not_after)
                .with_context(|| format!("a CA for {msp_id}"))?;
            cas.insert(msp_id, ca);
        }
    }
    let mut msps = Vec::with_capacity(cas.len());
    for (msp_id, ca) in &cas {
        msps.push(Msp::from_fabric_config(&msp_config(msp_id, ca.cert_pem()))?);
    }
    let manager = MspManager::new(msps);
    let mut identities = Vec::with_capacity(wanted.len());
    for (index, (msp_id, role)) in wanted.iter().enumerate() {
        let ca = cas
            .get(msp_id.as_str())
            .expect("a CA was made for every signer's MSP");
        let name = format!("signer{index}");
        let issued = ca.issue(
            msp_id,
            &LeafSpec::new(&name, Some(*role), not_before, not_after),
        )?;
        let serialized = serialize_identity(msp_id, issued.cert_pem.as_bytes());
        let identity = manager
            .deserialize_identity(&serialized, u64::try_from(now).unwrap_or(0))
            .with_context(|| format!("validating the {role:?} identity made for {msp_id}"))?;
        identities.push(identity);
    }
    let evaluation = compiled.evaluate(&VerifiedSigners::from_identities(identities));
    let verdict = if evaluation.satisfied {
        "satisfied"
    } else {
        "NOT satisfied"
    };
    Ok((
        format!("policy {policy}: {verdict}\n{}\n", evaluation.explanation),
        evaluation.satisfied,
    ))
}

/// An MSP config trusting `ca_pem`, with NodeOUs client/peer/admin/orderer certified by it
/// (what `load_msp_dir` makes of a cryptogen folder).
fn msp_config(msp_id: &str, ca_pem: &str) -> pb::FabricMspConfig {
    let ou = |role: Role| {
        Some(pb::FabricOuIdentifier {
            certificate: ca_pem.as_bytes().to_vec(),
            organizational_unit_identifier: role.default_ou().into(),
        })
    };
    pb::FabricMspConfig {
        name: msp_id.into(),
        root_certs: vec![ca_pem.as_bytes().to_vec()],
        crypto_config: Some(pb::FabricCryptoConfig {
            signature_hash_family: "SHA2".into(),
            identity_identifier_hash_function: "SHA256".into(),
        }),
        fabric_node_ous: Some(pb::FabricNodeOUs {
            enable: true,
            client_ou_identifier: ou(Role::Client),
            peer_ou_identifier: ou(Role::Peer),
            admin_ou_identifier: ou(Role::Admin),
            orderer_ou_identifier: ou(Role::Orderer),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn signers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn two_of_three_members_satisfy_out_of_two() {
        let policy = "OutOf(2,'A.member','B.member','C.member')";
        let (text, satisfied) = explain(policy, &signers(&["A:member", "C:admin"]), NOW).unwrap();
        assert!(satisfied, "{text}");
        assert!(text.contains(": satisfied"), "{text}");
        for msp in ["'A.member'", "'B.member'", "'C.member'"] {
            assert!(text.contains(msp), "the tree names {msp}:\n{text}");
        }
    }

    #[test]
    fn one_signer_short_is_explained() {
        let policy = "OutOf(2,'A.member','B.member','C.member')";
        let (text, satisfied) = explain(policy, &signers(&["B:peer"]), NOW).unwrap();
        assert!(!satisfied, "{text}");
        assert!(text.contains("NOT satisfied"), "{text}");
        assert!(
            text.contains("'A.member'") && text.contains("'C.member'"),
            "{text}"
        );
    }

    #[test]
    fn a_member_is_not_an_admin() {
        let (text, satisfied) = explain("OR('A.admin')", &signers(&["A:member"]), NOW).unwrap();
        assert!(!satisfied, "{text}");
        let (_, satisfied) = explain("OR('A.admin')", &signers(&["A:admin"]), NOW).unwrap();
        assert!(satisfied);
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let err = explain("OR('A.member'", &[], NOW).unwrap_err().to_string();
        assert!(!err.is_empty());
        let err = explain("OR('A.member')", &signers(&["A"]), NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not MSP:role"), "{err}");
        let err = explain("OR('A.member')", &signers(&["A:boss"]), NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown role"), "{err}");
    }
}
