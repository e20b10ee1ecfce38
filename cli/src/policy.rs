//! `gridledger policy explain`: evaluates a signature policy against a hypothetical set of
//! signers (`MSP:role`) and prints the policy engine's evaluation tree — a way to see, before
//! collecting signatures, which combinations of organizations satisfy a policy.
//!
//! Each signer is a certificate issued on the spot by a throwaway CA of its MSP, with the
//! NodeOU of its role, and validated by an MSP built like any channel MSP; so what is printed
//! is exactly what the channel's policy engine would decide for real signers in those roles.
//! Real certificates can be given instead (`MSP:cert.pem`), validated by the MSP folder named
//! with `--msp-dir MSP=DIR`.

use anyhow::{Context, bail};
use clap::Subcommand;
use gridledger_channels::policy::{CompiledSignaturePolicy, VerifiedSigners, parse};
use gridledger_identity::material::{CertificateAuthority, LeafSpec, Seed};
use gridledger_identity::{Msp, MspManager, Role, load_msp_dir, serialize_identity};
use gridledger_proto::msp as pb;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print a signature policy's evaluation tree for a set of signers, and whether it is
    /// satisfied (exit status 0 when satisfied, 1 when not).
    Explain {
        /// A signature policy, e.g. "OutOf(2,'A.member','B.member','C.member')".
        #[arg(long)]
        policy: String,
        /// The signers, comma-separated `MSP:role` (role: member, admin, client, peer, orderer;
        /// a member signs with a client certificate) or `MSP:FILE`, a signer's certificate
        /// (PEM) validated by that MSP's --msp-dir. Empty for no signers.
        #[arg(long, value_delimiter = ',', default_value = "")]
        signers: Vec<String>,
        /// `MSP=DIR`: the MSP folder (cacerts/, …) that validates MSP's signer certificates
        /// (repeatable). An MSP given this way takes certificate files only.
        #[arg(long = "msp-dir", value_name = "MSP=DIR")]
        msp_dirs: Vec<String>,
    },
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Explain {
            policy,
            signers,
            msp_dirs,
        } => {
            let mut dirs = BTreeMap::new();
            for entry in &msp_dirs {
                let (msp_id, dir) = entry
                    .split_once('=')
                    .with_context(|| format!("--msp-dir {entry:?} is not MSP=DIR"))?;
                dirs.insert(msp_id.to_string(), PathBuf::from(dir));
            }
            let (text, satisfied) = explain(&policy, &dirs, &signers, crate::now_unix_secs())?;
            crate::print_out(&text)?;
            if !satisfied {
                bail!("the policy is not satisfied by these signers");
            }
            Ok(())
        }
    }
}

/// A signer to evaluate: a role of an MSP, or a certificate file.
enum Wanted {
    Role(Role),
    Certificate(Vec<u8>),
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

/// The evaluation tree of `policy` for `signers` (`MSP:role`, or `MSP:FILE` for an MSP in
/// `msp_dirs`) at `now`, and the verdict.
pub(crate) fn explain(
    policy: &str,
    msp_dirs: &BTreeMap<String, PathBuf>,
    signers: &[String],
    now: i64,
) -> anyhow::Result<(String, bool)> {
    let envelope = parse(policy).map_err(|e| anyhow::anyhow!("{}", e.render(policy)))?;
    let compiled = CompiledSignaturePolicy::compile(&envelope)
        .with_context(|| format!("policy {policy:?}"))?;
    let mut wanted: Vec<(String, Wanted)> = Vec::new();
    for spec in signers.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (msp_id, what) = spec
            .split_once(':')
            .with_context(|| format!("signer {spec:?} is not MSP:role"))?;
        if msp_id.is_empty() {
            bail!("signer {spec:?} names no MSP");
        }
        let what = if msp_dirs.contains_key(msp_id) {
            Wanted::Certificate(
                std::fs::read(what)
                    .with_context(|| format!("signer {spec:?}: reading the certificate {what}"))?,
            )
        } else {
            Wanted::Role(role_of(spec, what)?)
        };
        wanted.push((msp_id.to_string(), what));
    }

    let (not_before, not_after) = (now - 3_600, now + 3_600);
    let seed = Seed::from_text("gridledger policy explain");
    let mut cas: BTreeMap<&str, CertificateAuthority> = BTreeMap::new();
    for (msp_id, what) in &wanted {
        if matches!(what, Wanted::Role(_)) && !cas.contains_key(msp_id.as_str()) {
            let ca = CertificateAuthority::new_root(&seed, msp_id, "ca", not_before, not_after)
                .with_context(|| format!("a CA for {msp_id}"))?;
            cas.insert(msp_id, ca);
        }
    }
    let mut msps = Vec::with_capacity(cas.len() + msp_dirs.len());
    for (msp_id, ca) in &cas {
        msps.push(Msp::from_fabric_config(&msp_config(msp_id, ca.cert_pem()))?);
    }
    for (msp_id, dir) in msp_dirs {
        let config = load_msp_dir(msp_id, dir)
            .with_context(|| format!("loading the MSP folder {} of {msp_id}", dir.display()))?;
        msps.push(Msp::from_fabric_config(&config)?);
    }
    let manager = MspManager::new(msps);
    let mut identities = Vec::with_capacity(wanted.len());
    for (index, (msp_id, what)) in wanted.iter().enumerate() {
        let (cert_pem, label) = match what {
            Wanted::Role(role) => {
                let ca = cas
                    .get(msp_id.as_str())
                    .expect("a CA was made for every MSP with a role signer");
                let name = format!("signer{index}");
                let spec = LeafSpec::new(&name, Some(*role), not_before, not_after);
                let pem = ca.issue(msp_id, &spec)?.cert_pem.into_bytes();
                (pem, format!("{role:?} identity made"))
            }
            Wanted::Certificate(pem) => (pem.clone(), format!("certificate of signer #{index}")),
        };
        let serialized = serialize_identity(msp_id, &cert_pem);
        let identity = manager
            .deserialize_identity(&serialized, u64::try_from(now).unwrap_or(0))
            .with_context(|| format!("validating the {label} for {msp_id}"))?;
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

    fn no_dirs() -> BTreeMap<String, PathBuf> {
        BTreeMap::new()
    }

    fn signers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn two_of_three_members_satisfy_out_of_two() {
        let policy = "OutOf(2,'A.member','B.member','C.member')";
        let (text, satisfied) =
            explain(policy, &no_dirs(), &signers(&["A:member", "C:admin"]), NOW).unwrap();
        assert!(satisfied, "{text}");
        assert!(text.contains(": satisfied"), "{text}");
        for msp in ["'A.member'", "'B.member'", "'C.member'"] {
            assert!(text.contains(msp), "the tree names {msp}:\n{text}");
        }
    }

    #[test]
    fn one_signer_short_is_explained() {
        let policy = "OutOf(2,'A.member','B.member','C.member')";
        let (text, satisfied) = explain(policy, &no_dirs(), &signers(&["B:peer"]), NOW).unwrap();
        assert!(!satisfied, "{text}");
        assert!(text.contains("NOT satisfied"), "{text}");
        assert!(
            text.contains("'A.member'") && text.contains("'C.member'"),
            "{text}"
        );
    }

    #[test]
    fn a_member_is_not_an_admin() {
        let (text, satisfied) =
            explain("OR('A.admin')", &no_dirs(), &signers(&["A:member"]), NOW).unwrap();
        assert!(!satisfied, "{text}");
        let (_, satisfied) =
            explain("OR('A.admin')", &no_dirs(), &signers(&["A:admin"]), NOW).unwrap();
        assert!(satisfied);
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let err = explain("OR('A.member'", &no_dirs(), &[], NOW)
            .unwrap_err()
            .to_string();
        assert!(!err.is_empty());
        let err = explain("OR('A.member')", &no_dirs(), &signers(&["A"]), NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not MSP:role"), "{err}");
        let err = explain("OR('A.member')", &no_dirs(), &signers(&["A:boss"]), NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown role"), "{err}");
    }

    #[test]
    fn certificate_files_are_validated_by_their_msp_folder() {
        let dir = std::env::temp_dir().join(format!("gridledger-explain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("msp/cacerts")).unwrap();
        let seed = Seed::from_text("explain certificate files");
        let ca = CertificateAuthority::new_root(&seed, "A", "ca", NOW - 10, NOW + 10).unwrap();
        std::fs::write(dir.join("msp/cacerts/ca.pem"), ca.cert_pem()).unwrap();
        let admin = ca
            .issue(
                "A",
                &LeafSpec::new("Admin", Some(Role::Admin), NOW - 10, NOW + 10),
            )
            .unwrap();
        std::fs::write(dir.join("admin.pem"), &admin.cert_pem).unwrap();
        let dirs = BTreeMap::from([("A".to_string(), dir.join("msp"))]);
        let signer = format!("A:{}", dir.join("admin.pem").display());
        let (text, satisfied) = explain(
            "AND('A.admin','B.member')",
            &dirs,
            &signers(&[&signer, "B:member"]),
            NOW,
        )
        .unwrap();
        assert!(satisfied, "{text}");
        assert!(text.contains("CN=Admin"), "{text}");
        // A certificate from a CA the folder does not hold is refused.
        let other = CertificateAuthority::new_root(&seed, "A", "other", NOW - 10, NOW + 10)
            .unwrap()
            .issue(
                "A",
                &LeafSpec::new("Stranger", Some(Role::Admin), NOW - 10, NOW + 10),
            )
            .unwrap();
        std::fs::write(dir.join("stranger.pem"), &other.cert_pem).unwrap();
        let stranger = format!("A:{}", dir.join("stranger.pem").display());
        assert!(explain("OR('A.admin')", &dirs, &signers(&[&stranger]), NOW).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
