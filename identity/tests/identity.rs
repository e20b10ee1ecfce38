//! Identity layer tests: certificate chains, roles, revocation, validity, signatures (incl.
//! high-S), caching, crypto material, and real Fabric 2.5.5 identities and signatures.

use gridledger_identity::material::{
    CertificateAuthority, CryptoConfig, IssuedIdentity, LeafSpec, SEEDED_NOT_BEFORE, Seed,
    high_s_twin_pem,
};
use gridledger_identity::signature::{parse_der_signature, to_high_s};
use gridledger_identity::{
    Certificate, IdentityError, IdentityId, Msp, MspManager, Role, SignatureError, SigningIdentity,
    serialize_identity,
};
use gridledger_proto::common::{Envelope, Payload, SignatureHeader};
use gridledger_proto::msp::{FabricMspConfig, FabricNodeOUs, FabricOuIdentifier};
use gridledger_proto::prost::Message;
use gridledger_proto::protos::{ChaincodeActionPayload, Transaction};
use std::collections::BTreeMap;

const DAY: i64 = 86_400;
const T0: i64 = SEEDED_NOT_BEFORE;
/// A moment inside every test certificate's validity.
const NOW: u64 = (T0 + 10 * DAY) as u64;

fn leaf(name: &str, role: Option<Role>) -> LeafSpec {
    LeafSpec::new(name, role, T0, T0 + 365 * DAY)
}

/// A NodeOU identifier with the conventional OU value of `role` and no certifying CA.
fn ou_identifier(role: Role) -> Option<FabricOuIdentifier> {
    Some(FabricOuIdentifier {
        certificate: Vec::new(),
        organizational_unit_identifier: role.default_ou().into(),
    })
}

/// NodeOUs enabled with all four role identifiers, none restricted to a CA.
fn all_node_ous() -> FabricNodeOUs {
    FabricNodeOUs {
        enable: true,
        client_ou_identifier: ou_identifier(Role::Client),
        peer_ou_identifier: ou_identifier(Role::Peer),
        admin_ou_identifier: ou_identifier(Role::Admin),
        orderer_ou_identifier: ou_identifier(Role::Orderer),
    }
}

fn root(seed: &str, msp_id: &str) -> CertificateAuthority {
    CertificateAuthority::new_root(
        &Seed::from_text(seed),
        msp_id,
        &format!("ca.{msp_id}"),
        T0,
        T0 + 3650 * DAY,
    )
    .expect("root CA")
}

fn msp_config(
    msp_id: &str,
    roots: &[&str],
    intermediates: &[&str],
    crls: &[String],
) -> FabricMspConfig {
    FabricMspConfig {
        name: msp_id.into(),
        root_certs: roots.iter().map(|r| r.as_bytes().to_vec()).collect(),
        intermediate_certs: intermediates
            .iter()
            .map(|r| r.as_bytes().to_vec())
            .collect(),
        revocation_list: crls.iter().map(|c| c.as_bytes().to_vec()).collect(),
        fabric_node_ous: Some(all_node_ous()),
        ..Default::default()
    }
}

fn manager(cfg: &FabricMspConfig) -> MspManager {
    MspManager::new([Msp::from_fabric_config(cfg).expect("valid MSP config")])
}

fn serialized(msp_id: &str, id: &IssuedIdentity) -> Vec<u8> {
    serialize_identity(msp_id, id.cert_pem.as_bytes())
}

#[test]
fn leaf_issued_by_root_validates_with_its_role() {
    let ca = root("roles", "DSOMSP");
    let msps = manager(&msp_config("DSOMSP", &[ca.cert_pem()], &[], &[]));
    for role in Role::ALL {
        let id = ca
            .issue("DSOMSP", &leaf(&format!("{role}1"), Some(role)))
            .expect("issue");
        let identity = msps
            .deserialize_identity(&serialized("DSOMSP", &id), NOW)
            .expect("valid identity");
        assert_eq!(identity.msp_id(), "DSOMSP");
        assert_eq!(identity.role(), Some(role));
        assert_eq!(identity.is_admin(), role == Role::Admin);
        assert!(
            identity.subject().contains(&format!("{role}1")),
            "{}",
            identity.subject()
        );
    }
}

#[test]
fn certificate_without_a_role_ou_is_rejected_when_node_ous_are_enabled() {
    let ca = root("norole", "DSOMSP");
    let msps = manager(&msp_config("DSOMSP", &[ca.cert_pem()], &[], &[]));
    let id = ca.issue("DSOMSP", &leaf("nobody", None)).expect("issue");
    let err = msps
        .deserialize_identity(&serialized("DSOMSP", &id), NOW)
        .expect_err("no role");
    assert!(matches!(err, IdentityError::NoRole { .. }), "{err}");
}

#[test]
fn intermediate_ca_chains_to_root() {
    let ca = root("inter", "RetailerMSP");
    let inter = ca
        .new_intermediate("RetailerMSP", "ica.retailer", T0, T0 + 3650 * DAY)
        .expect("intermediate");
    let id = inter
        .issue("RetailerMSP", &leaf("User1", Some(Role::Client)))
        .expect("issue");
    let with_inter = manager(&msp_config(
        "RetailerMSP",
        &[ca.cert_pem()],
        &[inter.cert_pem()],
        &[],
    ));
    assert!(
        with_inter
            .deserialize_identity(&serialized("RetailerMSP", &id), NOW)
            .is_ok()
    );
    // Without the intermediate in the MSP the chain is broken.
    let without = manager(&msp_config("RetailerMSP", &[ca.cert_pem()], &[], &[]));
    let err = without
        .deserialize_identity(&serialized("RetailerMSP", &id), NOW)
        .expect_err("broken chain");
    assert!(matches!(err, IdentityError::UntrustedChain { .. }), "{err}");
}

#[test]
fn certificate_from_another_ca_is_rejected() {
    let ours = root("ours", "DSOMSP");
    let theirs = root("theirs", "DSOMSP"); // same names, different key
    let msps = manager(&msp_config("DSOMSP", &[ours.cert_pem()], &[], &[]));
    let id = theirs
        .issue("DSOMSP", &leaf("intruder", Some(Role::Admin)))
        .expect("issue");
    let err = msps
        .deserialize_identity(&serialized("DSOMSP", &id), NOW)
        .expect_err("wrong CA");
    assert!(matches!(err, IdentityError::UntrustedChain { .. }), "{err}");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_rejected() {
    let ca = root("validity", "DSOMSP");
    let msps = manager(&msp_config("DSOMSP", &[ca.cert_pem()], &[], &[]));
    let mut spec = leaf("shortlived", Some(Role::Client));
    spec.not_after = T0 + DAY;
    let id = ca.issue("DSOMSP", &spec).expect("issue");
    let bytes = serialized("DSOMSP", &id);
    assert!(msps.deserialize_identity(&bytes, (T0 + 60) as u64).is_ok());
    // Cached now, but the validity window is still enforced on a cache hit.
    let err = msps
        .deserialize_identity(&bytes, (T0 + 2 * DAY) as u64)
        .expect_err("expired");
    assert!(
        matches!(err, IdentityError::OutsideValidity { .. }),
        "{err}"
    );
    let err = msps
        .deserialize_identity(&bytes, (T0 - 60) as u64)
        .expect_err("not yet valid");
    assert!(
        matches!(err, IdentityError::OutsideValidity { .. }),
        "{err}"
    );
}

#[test]
fn revoked_certificate_is_rejected_and_others_still_pass() {
    let ca = root("crl", "CommunityMSP");
    let bad = ca
        .issue("CommunityMSP", &leaf("stolen", Some(Role::Client)))
        .expect("issue");
    let good = ca
        .issue("CommunityMSP", &leaf("honest", Some(Role::Client)))
        .expect("issue");
    let crl = ca
        .revocation_list(std::slice::from_ref(&bad.serial), T0 + DAY)
        .expect("crl");
    let msps = manager(&msp_config("CommunityMSP", &[ca.cert_pem()], &[], &[crl]));
    let err = msps
        .deserialize_identity(&serialized("CommunityMSP", &bad), NOW)
        .expect_err("revoked");
    assert!(matches!(err, IdentityError::Revoked { .. }), "{err}");
    assert!(
        msps.deserialize_identity(&serialized("CommunityMSP", &good), NOW)
            .is_ok()
    );
}

#[test]
fn crl_signed_by_a_foreign_ca_makes_the_msp_config_invalid() {
    let ca = root("crl-own", "CommunityMSP");
    let other = root("crl-other", "CommunityMSP");
    let crl = other.revocation_list(&[vec![1]], T0).expect("crl");
    let err = Msp::from_fabric_config(&msp_config("CommunityMSP", &[ca.cert_pem()], &[], &[crl]))
        .expect_err("foreign CRL");
    assert!(err.to_string().contains("revocation list"), "{err}");
}

#[test]
fn ca_certificate_used_as_a_leaf_is_rejected() {
    let ca = root("caleaf", "DSOMSP");
    let inter = ca
        .new_intermediate("DSOMSP", "ica", T0, T0 + 3650 * DAY)
        .expect("intermediate");
    let msps = manager(&msp_config(
        "DSOMSP",
        &[ca.cert_pem()],
        &[inter.cert_pem()],
        &[],
    ));
    let bytes = serialize_identity("DSOMSP", inter.cert_pem().as_bytes());
    let err = msps
        .deserialize_identity(&bytes, NOW)
        .expect_err("CA as leaf");
    assert!(matches!(err, IdentityError::CaAsLeaf { .. }), "{err}");
}

#[test]
fn unknown_msp_and_malformed_input_give_clear_errors() {
    let ca = root("bad", "DSOMSP");
    let msps = manager(&msp_config("DSOMSP", &[ca.cert_pem()], &[], &[]));
    let id = ca
        .issue("DSOMSP", &leaf("u", Some(Role::Client)))
        .expect("issue");
    let err = msps
        .deserialize_identity(&serialized("RetailerMSP", &id), NOW)
        .expect_err("unknown MSP");
    assert_eq!(err, IdentityError::UnknownMsp("RetailerMSP".into()));

    let full = serialized("DSOMSP", &id);
    for cut in [1, 5, full.len() / 2, full.len() - 1] {
        assert!(
            msps.deserialize_identity(&full[..cut], NOW).is_err(),
            "truncated at {cut}"
        );
    }
    let garbage_pem = serialize_identity(
        "DSOMSP",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let err = msps
        .deserialize_identity(&garbage_pem, NOW)
        .expect_err("bad PEM");
    assert!(err.to_string().contains("PEM"), "{err}");
    let garbage_der = serialize_identity(
        "DSOMSP",
        pem::encode(&pem::Pem::new(
            "CERTIFICATE",
            vec![0x30, 0x03, 0x02, 0x01, 0x01],
        ))
        .as_bytes(),
    );
    let err = msps
        .deserialize_identity(&garbage_der, NOW)
        .expect_err("bad DER");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(Certificate::from_pem(b"not pem at all").is_err());
}

#[test]
fn validations_are_cached() {
    let ca = root("cache", "DSOMSP");
    let msps = manager(&msp_config("DSOMSP", &[ca.cert_pem()], &[], &[]));
    let id = ca
        .issue("DSOMSP", &leaf("u", Some(Role::Peer)))
        .expect("issue");
    let bytes = serialized("DSOMSP", &id);
    let a = msps.deserialize_identity(&bytes, NOW).expect("valid");
    let b = msps.deserialize_identity(&bytes, NOW + 1).expect("valid");
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "second lookup must come from the cache"
    );
}

#[test]
fn certificate_attributes_are_readable() {
    let ca = root("attrs", "RetailerMSP");
    let mut spec = leaf("prosumer7", Some(Role::Client));
    spec.attributes
        .insert("pod".into(), "IT001E00012345".into());
    spec.attributes.insert("meter".into(), "M-0042".into());
    let id = ca.issue("RetailerMSP", &spec).expect("issue");
    let msps = manager(&msp_config("RetailerMSP", &[ca.cert_pem()], &[], &[]));
    let identity = msps
        .deserialize_identity(&serialized("RetailerMSP", &id), NOW)
        .expect("valid");
    assert_eq!(identity.attribute("pod"), Some("IT001E00012345"));
    assert_eq!(identity.attribute("meter"), Some("M-0042"));
    assert_eq!(identity.attribute("bus"), None);
}

#[test]
fn signatures_round_trip_and_reject_tampering_and_high_s() {
    let ca = root("sig", "DSOMSP");
    let id = ca
        .issue("DSOMSP", &leaf("peer0.dso", Some(Role::Peer)))
        .expect("issue");
    let signer = SigningIdentity::from_pem("DSOMSP", id.cert_pem.as_bytes(), id.key_pem.as_bytes())
        .expect("signer");
    let msps = manager(&msp_config("DSOMSP", &[ca.cert_pem()], &[], &[]));
    let identity = msps
        .deserialize_identity(signer.serialized(), NOW)
        .expect("valid");
    let message = b"proposal response payload || endorser";
    for _ in 0..32 {
        let sig = signer.sign(message);
        let raw = parse_der_signature(&sig).expect("DER");
        assert!(
            gridledger_identity::signature::is_low_s(&raw.s),
            "signer must normalise to low-S"
        );
        assert_eq!(identity.verify(message, &sig), Ok(()));
        assert_eq!(
            identity.verify(b"another message", &sig),
            Err(SignatureError::Invalid)
        );
        let high = to_high_s(&sig).expect("DER");
        assert_eq!(identity.verify(message, &high), Err(SignatureError::HighS));
    }
    assert!(matches!(
        identity.verify(message, b"\x30\x02\x02\x00"),
        Err(SignatureError::Malformed(_))
    ));
    assert!(matches!(
        identity.verify(message, &[]),
        Err(SignatureError::Malformed(_))
    ));
}

#[test]
fn signer_rejects_a_key_that_does_not_match_its_certificate() {
    let ca = root("mismatch", "DSOMSP");
    let a = ca
        .issue("DSOMSP", &leaf("a", Some(Role::Client)))
        .expect("issue");
    let b = ca
        .issue("DSOMSP", &leaf("b", Some(Role::Client)))
        .expect("issue");
    let err = SigningIdentity::from_pem("DSOMSP", a.cert_pem.as_bytes(), b.key_pem.as_bytes())
        .expect_err("mismatch");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(SigningIdentity::from_pem("DSOMSP", a.cert_pem.as_bytes(), b"garbage").is_err());
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gridledger-identity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read_tree(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .expect("prefix")
                    .display()
                    .to_string();
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

const CONSORTIUM: &str = r#"
seed = "test-consortium"
[[organizations]]
msp_id = "DSOMSP"
peers = [{ name = "peer0.dso" }]
[[organizations]]
msp_id = "RetailerMSP"
peers = [{ name = "peer0.retailer" }]
users = [{ name = "User1" }, { name = "Prosumer1", attributes = { pod = "POD-0001" } }]
[[organizations]]
msp_id = "OrdererMSP"
orderers = [{ name = "orderer0" }, { name = "orderer1" }]
"#;

#[test]
fn seeded_material_is_deterministic_and_loads_as_msps() {
    let config: CryptoConfig = toml::from_str(CONSORTIUM).expect("config");
    let (a, b) = (temp_dir("det-a"), temp_dir("det-b"));
    gridledger_identity::material::generate(&config, &a, 0).expect("generate a");
    gridledger_identity::material::generate(&config, &b, 0).expect("generate b");
    let (ta, tb) = (read_tree(&a), read_tree(&b));
    assert!(
        ta.len() > 30,
        "expected a full tree, got {} files",
        ta.len()
    );
    assert_eq!(ta, tb, "same seed must give byte-identical material");

    let org = a.join("organizations/RetailerMSP");
    let cfg = gridledger_identity::load_msp_dir("RetailerMSP", &org.join("msp")).expect("MSP dir");
    let msps = manager(&cfg);
    let user = SigningIdentity::load(
        "RetailerMSP",
        &org.join("users/Prosumer1/msp/signcerts/cert.pem"),
        &org.join("users/Prosumer1/msp/keystore/key.pem"),
    )
    .expect("user");
    let identity = msps
        .deserialize_identity(user.serialized(), NOW)
        .expect("valid");
    assert_eq!(identity.role(), Some(Role::Client));
    assert_eq!(identity.attribute("pod"), Some("POD-0001"));
    let admin = SigningIdentity::load(
        "RetailerMSP",
        &org.join("users/Admin/msp/signcerts/cert.pem"),
        &org.join("users/Admin/msp/keystore/key.pem"),
    )
    .expect("admin");
    assert!(
        msps.deserialize_identity(admin.serialized(), NOW)
            .expect("valid")
            .is_admin()
    );
    let peer_tls = Certificate::from_pem(
        &std::fs::read(org.join("peers/peer0.retailer/tls/server.crt")).expect("tls"),
    )
    .expect("cert");
    assert!(!peer_tls.is_ca);
    // The TLS certificate is not a signing identity of the org: it chains to the TLS CA only.
    let tls_as_identity = serialize_identity(
        "RetailerMSP",
        &std::fs::read(org.join("peers/peer0.retailer/tls/server.crt")).expect("tls"),
    );
    assert!(msps.deserialize_identity(&tls_as_identity, NOW).is_err());
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn bad_crypto_configs_are_refused() {
    for (text, needle) in [
        ("organizations = []", "no organizations"),
        ("[[organizations]]\nmsp_id = \"A/B\"", "msp_id"),
        (
            "[[organizations]]\nmsp_id = \"A\"\n[[organizations]]\nmsp_id = \"A\"",
            "duplicate",
        ),
        (
            "[[organizations]]\nmsp_id = \"A\"\nusers = [{ name = \"Admin\" }]",
            "duplicate identity",
        ),
    ] {
        let config: CryptoConfig = toml::from_str(text).expect("parses");
        let err =
            gridledger_identity::material::generate(&config, &temp_dir("bad"), 0).expect_err(text);
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
    assert!(
        toml::from_str::<CryptoConfig>("[[organizations]]\nmsp_id = \"A\"\ncolour = 1").is_err()
    );
}

// ---- Real Fabric 2.5.5 identities and signatures ----

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/fabric-2.5.5-chain/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn real_fabric_creator_and_endorser_signatures_verify() {
    let cfg = msp_config(
        "Org1MSP",
        &[std::str::from_utf8(&fixture("msp/org1-ca.pem")).expect("utf8")],
        &[],
        &[],
    );
    let msps = manager(&cfg);
    let user = Certificate::from_pem(&fixture("msp/org1-user1.pem")).expect("user cert");
    let at = (user.not_before + 3600) as u64;
    let (mut creators, mut endorsements) = (0, 0);
    for n in 1..=80 {
        let block =
            gridledger_proto::common::Block::decode(fixture(&format!("block{n:03}.pb")).as_slice())
                .expect("block");
        for env_bytes in &block.data.expect("data").data {
            let env = Envelope::decode(env_bytes.as_slice()).expect("envelope");
            let payload = Payload::decode(env.payload.as_slice()).expect("payload");
            let header = payload.header.expect("header");
            let sig_header = SignatureHeader::decode(header.signature_header.as_slice())
                .expect("signature header");
            let creator = msps
                .deserialize_identity(&sig_header.creator, at)
                .expect("creator validates");
            assert!(
                matches!(creator.role(), Some(Role::Client | Role::Admin)),
                "Fabric's creators carry OU=client or OU=admin"
            );
            assert_eq!(
                creator.verify(&env.payload, &env.signature),
                Ok(()),
                "block {n} creator signature"
            );
            creators += 1;
            let tx = Transaction::decode(payload.data.as_slice()).expect("transaction");
            for action in tx.actions {
                let cap = ChaincodeActionPayload::decode(action.payload.as_slice())
                    .expect("action payload");
                let endorsed = cap.action.expect("endorsed action");
                for e in endorsed.endorsements {
                    let endorser = msps
                        .deserialize_identity(&e.endorser, at)
                        .expect("endorser validates");
                    assert_eq!(endorser.role(), Some(Role::Peer));
                    let mut signed = endorsed.proposal_response_payload.clone();
                    signed.extend_from_slice(&e.endorser);
                    assert_eq!(
                        endorser.verify(&signed, &e.signature),
                        Ok(()),
                        "block {n} endorsement"
                    );
                    // The same signature over other bytes must fail.
                    assert_eq!(
                        endorser.verify(&endorsed.proposal_response_payload, &e.signature),
                        Err(SignatureError::Invalid)
                    );
                    endorsements += 1;
                }
            }
        }
    }
    assert_eq!(
        (creators, endorsements),
        (451, 451),
        "the manifest counts 451 of each"
    );
}

#[test]
fn real_fabric_orderer_identity_and_block_signatures_verify() {
    // Fabric's CAs do not normalise S in certificate signatures: this CA's self-signature is
    // high-S, which certificate validation must accept (transaction signatures must not).
    let ca_pem = fixture("msp/orderer-ca.pem");
    let cfg = msp_config(
        "OrdererMSP",
        &[std::str::from_utf8(&ca_pem).expect("utf8")],
        &[],
        &[],
    );
    let msps = manager(&cfg);
    let orderer_cert = Certificate::from_pem(&fixture("msp/orderer0.pem")).expect("orderer cert");
    let at = (orderer_cert.not_before + 3600) as u64;
    let mut verified = 0;
    for n in 1..=80 {
        let block =
            gridledger_proto::common::Block::decode(fixture(&format!("block{n:03}.pb")).as_slice())
                .expect("block");
        let header_bytes =
            gridledger_proto::block_header_bytes(block.header.as_ref().expect("header"));
        let slot = &block.metadata.as_ref().expect("metadata").metadata[0];
        let metadata = gridledger_proto::common::Metadata::decode(slot.as_slice())
            .expect("signatures metadata");
        for sig in &metadata.signatures {
            let sig_header =
                SignatureHeader::decode(sig.signature_header.as_slice()).expect("signature header");
            let orderer = msps
                .deserialize_identity(&sig_header.creator, at)
                .expect("orderer validates");
            assert_eq!(orderer.role(), Some(Role::Orderer));
            let mut signed = metadata.value.clone();
            signed.extend_from_slice(&sig.signature_header);
            signed.extend_from_slice(&header_bytes);
            assert_eq!(
                orderer.verify(&signed, &sig.signature),
                Ok(()),
                "block {n} orderer signature"
            );
            verified += 1;
        }
    }
    assert_eq!(verified, 80);
}

// ---- Identity ids: one identity however it is encoded ----

/// The same PEM certificate with 76-character lines and a trailing blank line.
fn rewrapped(cert_pem: &str) -> String {
    let body: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in body.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n\n");
    out
}

/// A serialized identity with an unknown field (number 3, varint 1) appended; protobuf
/// decoders skip it.
fn with_unknown_field(serialized: &[u8]) -> Vec<u8> {
    let mut out = serialized.to_vec();
    out.extend_from_slice(&[0x18, 0x01]);
    out
}

#[test]
fn every_encoding_of_a_certificate_has_one_identity_id() {
    let ca = root("ids", "DSOMSP");
    let msps = manager(&msp_config("DSOMSP", &[ca.cert_pem()], &[], &[]));
    let id = ca
        .issue("DSOMSP", &leaf("Admin@dso", Some(Role::Admin)))
        .expect("issue");
    let twin = high_s_twin_pem(&id.cert_pem).expect("twin");
    assert_ne!(twin, id.cert_pem);
    let encodings = [
        serialized("DSOMSP", &id),
        serialize_identity("DSOMSP", rewrapped(&id.cert_pem).as_bytes()),
        with_unknown_field(&serialized("DSOMSP", &id)),
        serialize_identity("DSOMSP", twin.as_bytes()),
    ];
    let identities: Vec<_> = encodings
        .iter()
        .map(|bytes| msps.deserialize_identity(bytes, NOW).expect("validates"))
        .collect();
    for (identity, bytes) in identities.iter().zip(&encodings) {
        assert_eq!(identity.serialized(), bytes.as_slice());
        assert_eq!(identity.id(), identities[0].id(), "{}", identity.id());
        assert_eq!(
            &IdentityId::from_serialized(bytes).expect("decodes"),
            identities[0].id()
        );
    }
    assert_eq!(identities[0].id().msp_id(), "DSOMSP");
    // The id of a low-S certificate hashes its DER as received, as Fabric's does.
    let cert = Certificate::from_pem(id.cert_pem.as_bytes()).expect("cert");
    let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &cert.der)
        .as_ref()
        .try_into()
        .expect("32 bytes");
    assert_eq!(identities[0].id().certificate_sha256(), &digest);
    // The same certificate claimed by another MSP is another identity.
    let elsewhere = IdentityId::from_serialized(&serialized("RetailerMSP", &id)).expect("decodes");
    assert_ne!(&elsewhere, identities[0].id());
}

#[test]
fn admin_certificates_match_in_any_encoding() {
    let ca = root("admincerts", "DSOMSP");
    let operator = ca
        .issue("DSOMSP", &leaf("operator", Some(Role::Client)))
        .expect("issue");
    let other = ca
        .issue("DSOMSP", &leaf("other", Some(Role::Client)))
        .expect("issue");
    let twin = high_s_twin_pem(&operator.cert_pem).expect("twin");
    // The admin list holds the high-S twin; the operator signs with the original, and back.
    for (listed, presented) in [
        (twin.clone(), operator.cert_pem.clone()),
        (operator.cert_pem.clone(), twin.clone()),
    ] {
        let mut cfg = msp_config("DSOMSP", &[ca.cert_pem()], &[], &[]);
        cfg.admins = vec![listed.into_bytes()];
        let msps = manager(&cfg);
        let identity = msps
            .deserialize_identity(&serialize_identity("DSOMSP", presented.as_bytes()), NOW)
            .expect("valid");
        assert_eq!(identity.role(), Some(Role::Client));
        assert!(identity.is_admin(), "listed admin in another encoding");
        assert!(
            !msps
                .deserialize_identity(&serialized("DSOMSP", &other), NOW)
                .expect("valid")
                .is_admin()
        );
    }
}

/// (header length, content length) of the DER element at the start of `bytes`.
fn der_header(bytes: &[u8]) -> (usize, usize) {
    match bytes[1] {
        n if n < 0x80 => (2, usize::from(n)),
        0x81 => (3, usize::from(bytes[2])),
        0x82 => (4, usize::from(bytes[2]) << 8 | usize::from(bytes[3])),
        other => panic!("unexpected DER length byte {other:#x}"),
    }
}

#[test]
fn a_reencoded_outer_layer_is_not_a_certificate() {
    let ca = root("outer", "DSOMSP");
    let id = ca
        .issue("DSOMSP", &leaf("u", Some(Role::Client)))
        .expect("issue");
    let der = Certificate::from_pem(id.cert_pem.as_bytes())
        .expect("cert")
        .der;
    assert_eq!(der[..2], [0x30, 0x82], "a leaf is 256..65535 bytes long");
    // The same length in three bytes instead of two: valid BER, not DER.
    let mut long_form = vec![0x30, 0x83, 0x00];
    long_form.extend_from_slice(&der[2..]);
    let err = Certificate::from_der(&long_form).expect_err("non-minimal length");
    assert!(matches!(err, IdentityError::Der { .. }), "{err}");
    // The unsigned outer algorithm identifier with explicit NULL parameters.
    let body = &der[4..];
    let (tbs_header, tbs_len) = der_header(body);
    let alg_start = tbs_header + tbs_len;
    let (alg_header, alg_len) = der_header(&body[alg_start..]);
    assert_eq!(alg_header, 2);
    let mut with_null = body[..alg_start].to_vec();
    with_null.extend_from_slice(&[0x30, u8::try_from(alg_len + 2).expect("short")]);
    with_null.extend_from_slice(&body[alg_start + 2..alg_start + 2 + alg_len]);
    with_null.extend_from_slice(&[0x05, 0x00]);
    with_null.extend_from_slice(&body[alg_start + 2 + alg_len..]);
    let mut reencoded = vec![0x30, 0x82];
    reencoded.extend_from_slice(&u16::try_from(with_null.len()).expect("fits").to_be_bytes());
    reencoded.extend_from_slice(&with_null);
    let err = Certificate::from_der(&reencoded).expect_err("outer algorithm differs");
    assert!(err.to_string().contains("signature algorithm"), "{err}");
}

// ---- NodeOU roles ----

#[test]
fn a_certificate_with_two_role_ous_is_rejected() {
    let ca = root("tworoles", "DSOMSP");
    let msps = manager(&msp_config("DSOMSP", &[ca.cert_pem()], &[], &[]));
    let mut spec = leaf("sneaky", Some(Role::Client));
    spec.extra_organizational_unit = Some("admin".into());
    let both = ca.issue("DSOMSP", &spec).expect("issue");
    let cert = Certificate::from_pem(both.cert_pem.as_bytes()).expect("cert");
    assert_eq!(cert.organizational_units, ["client", "admin"]);
    let err = msps
        .deserialize_identity(&serialized("DSOMSP", &both), NOW)
        .expect_err("two roles");
    assert!(matches!(err, IdentityError::SeveralRoles { .. }), "{err}");
    assert!(err.to_string().contains("client, admin"), "{err}");

    // An OU that names no role is no obstacle.
    let mut spec = leaf("member", Some(Role::Client));
    spec.extra_organizational_unit = Some("department1".into());
    let dept = ca.issue("DSOMSP", &spec).expect("issue");
    let identity = msps
        .deserialize_identity(&serialized("DSOMSP", &dept), NOW)
        .expect("one role");
    assert_eq!(identity.role(), Some(Role::Client));
    assert!(!identity.is_admin());
}

#[test]
fn role_identifiers_missing_from_the_config_are_not_defaulted() {
    let ca = root("partial", "DSOMSP");
    let admin = ca
        .issue("DSOMSP", &leaf("Admin", Some(Role::Admin)))
        .expect("issue");
    let client = ca
        .issue("DSOMSP", &leaf("User1", Some(Role::Client)))
        .expect("issue");

    // Only client and peer are configured: an admin OU marks nothing.
    let mut cfg = msp_config("DSOMSP", &[ca.cert_pem()], &[], &[]);
    cfg.fabric_node_ous = Some(FabricNodeOUs {
        enable: true,
        client_ou_identifier: ou_identifier(Role::Client),
        peer_ou_identifier: ou_identifier(Role::Peer),
        admin_ou_identifier: None,
        orderer_ou_identifier: None,
    });
    let msps = manager(&cfg);
    let err = msps
        .deserialize_identity(&serialized("DSOMSP", &admin), NOW)
        .expect_err("admin OU is not configured");
    assert!(matches!(err, IdentityError::NoRole { .. }), "{err}");
    let identity = msps
        .deserialize_identity(&serialized("DSOMSP", &client), NOW)
        .expect("client is configured");
    assert_eq!(identity.role(), Some(Role::Client));

    // A configured identifier with another value replaces the conventional one.
    cfg.fabric_node_ous = Some(FabricNodeOUs {
        enable: true,
        client_ou_identifier: Some(FabricOuIdentifier {
            certificate: Vec::new(),
            organizational_unit_identifier: "customer".into(),
        }),
        ..all_node_ous()
    });
    let err = manager(&cfg)
        .deserialize_identity(&serialized("DSOMSP", &client), NOW)
        .expect_err("OU 'client' is not the client OU");
    assert!(matches!(err, IdentityError::NoRole { .. }), "{err}");

    // Enabled with no identifier at all: NodeOUs are off, roles are not derived.
    cfg.fabric_node_ous = Some(FabricNodeOUs {
        enable: true,
        ..Default::default()
    });
    let msp = Msp::from_fabric_config(&cfg).expect("valid");
    assert!(msp.node_ous().is_none());
    let msps = MspManager::new([msp]);
    let nobody = ca.issue("DSOMSP", &leaf("nobody", None)).expect("issue");
    for id in [&admin, &nobody] {
        let identity = msps
            .deserialize_identity(&serialized("DSOMSP", id), NOW)
            .expect("no role needed");
        assert_eq!(identity.role(), None);
        assert!(!identity.is_admin());
    }

    // Two roles sharing one OU value is a configuration error.
    cfg.fabric_node_ous = Some(FabricNodeOUs {
        enable: true,
        peer_ou_identifier: ou_identifier(Role::Client),
        ..all_node_ous()
    });
    let err = Msp::from_fabric_config(&cfg).expect_err("ambiguous");
    assert!(err.to_string().contains("both use OU 'client'"), "{err}");
}

#[test]
fn a_role_identifier_certificate_restricts_the_issuing_ca() {
    let ca = root("certifier", "RetailerMSP");
    let ica1 = ca
        .new_intermediate("RetailerMSP", "ica1", T0, T0 + 3650 * DAY)
        .expect("intermediate");
    let ica2 = ca
        .new_intermediate("RetailerMSP", "ica2", T0, T0 + 3650 * DAY)
        .expect("intermediate");
    let mut cfg = msp_config(
        "RetailerMSP",
        &[ca.cert_pem()],
        &[ica1.cert_pem(), ica2.cert_pem()],
        &[],
    );
    cfg.fabric_node_ous = Some(FabricNodeOUs {
        enable: true,
        client_ou_identifier: Some(FabricOuIdentifier {
            certificate: ica1.cert_pem().as_bytes().to_vec(),
            organizational_unit_identifier: "client".into(),
        }),
        ..all_node_ous()
    });
    let msps = manager(&cfg);
    let client_of = |ca: &CertificateAuthority, name: &str| {
        let id = ca
            .issue("RetailerMSP", &leaf(name, Some(Role::Client)))
            .expect("issue");
        msps.deserialize_identity(&serialized("RetailerMSP", &id), NOW)
    };
    assert_eq!(
        client_of(&ica1, "by-ica1").expect("certified").role(),
        Some(Role::Client)
    );
    let err = client_of(&ica2, "by-ica2").expect_err("wrong certifier");
    assert!(
        matches!(&err, IdentityError::RoleNotCertified { role: Role::Client, issuer, .. } if issuer.contains("ica2")),
        "{err}"
    );
    // Peers are not restricted.
    let peer = ica2
        .issue("RetailerMSP", &leaf("peer0", Some(Role::Peer)))
        .expect("issue");
    assert!(
        msps.deserialize_identity(&serialized("RetailerMSP", &peer), NOW)
            .is_ok()
    );

    // The certifier must be one of the MSP's CAs.
    let stranger = root("certifier-stranger", "RetailerMSP");
    cfg.fabric_node_ous = Some(FabricNodeOUs {
        enable: true,
        client_ou_identifier: Some(FabricOuIdentifier {
            certificate: stranger.cert_pem().as_bytes().to_vec(),
            organizational_unit_identifier: "client".into(),
        }),
        ..all_node_ous()
    });
    let err = Msp::from_fabric_config(&cfg).expect_err("unknown certifier");
    assert!(
        err.to_string().contains("not a root or intermediate CA"),
        "{err}"
    );
}

#[test]
fn a_ca_that_issued_an_intermediate_cannot_issue_identities() {
    let ca = root("internal", "RetailerMSP");
    let ica = ca
        .new_intermediate("RetailerMSP", "ica", T0, T0 + 3650 * DAY)
        .expect("intermediate");
    let by_root = ca
        .issue("RetailerMSP", &leaf("by-root", Some(Role::Client)))
        .expect("issue");
    let by_ica = ica
        .issue("RetailerMSP", &leaf("by-ica", Some(Role::Client)))
        .expect("issue");
    let msps = manager(&msp_config(
        "RetailerMSP",
        &[ca.cert_pem()],
        &[ica.cert_pem()],
        &[],
    ));
    let err = msps
        .deserialize_identity(&serialized("RetailerMSP", &by_root), NOW)
        .expect_err("root is an internal node");
    assert!(
        matches!(&err, IdentityError::UntrustedChain { reason, .. } if reason.contains("intermediate CA")),
        "{err}"
    );
    assert!(
        msps.deserialize_identity(&serialized("RetailerMSP", &by_ica), NOW)
            .is_ok()
    );
    // Without the intermediate in the MSP, the root is a leaf of the tree again.
    let root_only = manager(&msp_config("RetailerMSP", &[ca.cert_pem()], &[], &[]));
    assert!(
        root_only
            .deserialize_identity(&serialized("RetailerMSP", &by_root), NOW)
            .is_ok()
    );
}
