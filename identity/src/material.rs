//! Crypto material for a consortium: CAs, node and user identities, TLS certificates.
//!
//! `gridledger crypto generate` writes, per organization, a signing CA and a TLS CA, the
//! peers' and orderers' identities and TLS pairs, and the admins' and clients' identities
//! (clients may carry certificate attributes such as a delivery point or meter id), as PEM
//! certificates and PKCS#8 PEM keys. With a seed every key, serial number and signature is
//! derived from it (ECDSA signatures per RFC 6979), so the output is byte-identical between
//! runs — what tests want. Without a seed a random one is drawn.
//!
//! Layout under `OUT/organizations/<MSPID>/` (documented in ARCHITECTURE.md):
//! ```text
//! ca/ca.pem, ca/ca.key             signing CA (the key stays with the org's CA operator)
//! tlsca/tlsca.pem, tlsca/tlsca.key TLS CA
//! msp/cacerts/ca.pem               the org's MSP folder, as a channel config reads it
//! msp/tlscacerts/tlsca.pem
//! msp/crls/                        revocation lists (PEM), empty at first
//! peers/<name>/msp/signcerts/cert.pem, peers/<name>/msp/keystore/key.pem, peers/<name>/msp/cacerts/ca.pem
//! peers/<name>/tls/server.crt, server.key, ca.crt
//! orderers/<name>/…                as peers
//! users/<name>/msp/signcerts/cert.pem, users/<name>/msp/keystore/key.pem, users/<name>/msp/cacerts/ca.pem
//! users/<name>/tls/client.crt, client.key, ca.crt
//! ```

use crate::error::IdentityError;
use crate::msp::Role;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};
use ring::digest::SHA256;
use std::collections::BTreeMap;
use std::path::Path;
use time::OffsetDateTime;

/// `crypto generate` configuration (TOML).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoConfig {
    /// When set, all material is derived from this seed (byte-identical output).
    #[serde(default)]
    pub seed: Option<String>,
    /// Certificate lifetime in days (default 3650).
    #[serde(default = "default_validity_days")]
    pub validity_days: u32,
    pub organizations: Vec<OrgSpec>,
}

fn default_validity_days() -> u32 {
    3650
}

/// One organization's identities.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    pub msp_id: String,
    #[serde(default)]
    pub peers: Vec<NodeSpec>,
    #[serde(default)]
    pub orderers: Vec<NodeSpec>,
    /// Admin identities (OU `admin`); default one named `Admin`.
    #[serde(default = "default_admins")]
    pub admins: Vec<String>,
    /// Client identities (OU `client`).
    #[serde(default)]
    pub users: Vec<UserSpec>,
}

fn default_admins() -> Vec<String> {
    vec!["Admin".into()]
}

/// A peer or orderer node.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    /// Extra TLS subject alternative names (the name, `localhost` and `127.0.0.1` are always in).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// A client identity, optionally with certificate attributes (e.g. `pod`, `meter`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A certificate and its PKCS#8 private key, both PEM.
#[derive(Debug, Clone)]
pub struct IssuedIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    /// Serial number bytes (for revocation).
    pub serial: Vec<u8>,
}

/// What a leaf certificate says.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    pub role: Option<Role>,
    /// A further subject OU after the role's (e.g. a second role, to test that MSPs reject a
    /// certificate with two). One at most: rcgen keeps one value per attribute type, so this
    /// one is written under the OU object identifier as a custom attribute type.
    pub extra_organizational_unit: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// TLS subject alternative names; when non-empty the certificate is a TLS server+client cert.
    pub tls_hosts: Vec<String>,
    /// Validity window, unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl LeafSpec {
    /// A signing (non-TLS) certificate for `common_name` in `role`, with no attributes and no
    /// extra OU, valid from `not_before` to `not_after` (unix seconds).
    pub fn new(common_name: &str, role: Option<Role>, not_before: i64, not_after: i64) -> LeafSpec {
        LeafSpec {
            common_name: common_name.to_owned(),
            role,
            extra_organizational_unit: None,
            attributes: BTreeMap::new(),
            tls_hosts: Vec::new(),
            not_before,
            not_after,
        }
    }
}

/// The same certificate with the high-S twin of its issuer's signature (`s := n - s`): it still
/// verifies, but its bytes differ. Fabric (and the MSP here) must treat both as one identity;
/// tests use this to check that. Returns PEM.
pub fn high_s_twin_pem(cert_pem: &str) -> Result<String, IdentityError> {
    let der = crate::certificate::high_s_twin(cert_pem.as_bytes())?;
    Ok(pem::encode(&pem::Pem::new("CERTIFICATE", der)))
}

/// Derives keys and serial numbers from a 32-byte seed.
#[derive(Debug, Clone)]
pub struct Seed([u8; 32]);

impl Seed {
    /// A seed from text (tests, `seed = "…"` in the config).
    pub fn from_text(text: &str) -> Seed {
        Seed(sha256(&[b"gridledger-seed", text.as_bytes()]))
    }

    /// A fresh random seed.
    pub fn random() -> Result<Seed, IdentityError> {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| IdentityError::Key("system random generator failed".into()))?;
        Ok(Seed(bytes))
    }

    fn key(&self, label: &str) -> P256Key {
        let mut counter = 0u32;
        loop {
            let scalar = sha256(&[b"key", &self.0, label.as_bytes(), &counter.to_be_bytes()]);
            if let Ok(secret) = p256::SecretKey::from_slice(&scalar) {
                return P256Key::new(secret);
            }
            counter += 1; // out of range (probability ~2^-32): try the next candidate
        }
    }

    fn serial(&self, label: &str) -> Vec<u8> {
        let mut serial = sha256(&[b"serial", &self.0, label.as_bytes()])[..16].to_vec();
        serial[0] &= 0x7f; // positive
        serial[0] |= 0x01; // and no leading zero byte
        serial
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A P-256 key that signs certificates deterministically (RFC 6979).
struct P256Key {
    secret: p256::SecretKey,
    signing: p256::ecdsa::SigningKey,
    public_point: Vec<u8>,
}

impl P256Key {
    fn new(secret: p256::SecretKey) -> P256Key {
        let public_point = secret.public_key().to_sec1_bytes().to_vec();
        P256Key {
            signing: p256::ecdsa::SigningKey::from(&secret),
            secret,
            public_point,
        }
    }

    fn pkcs8_pem(&self) -> Result<String, IdentityError> {
        let doc = self
            .secret
            .to_pkcs8_der()
            .map_err(|e| IdentityError::Key(format!("PKCS#8 encoding failed: {e}")))?;
        Ok(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            doc.as_bytes().to_vec(),
        )))
    }
}

impl PublicKeyData for P256Key {
    fn der_bytes(&self) -> &[u8] {
        &self.public_point
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for P256Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signature: p256::ecdsa::Signature = self.signing.sign(msg);
        let signature = signature.normalize_s().unwrap_or(signature);
        Ok(signature.to_der().as_bytes().to_vec())
    }
}

/// A certificate authority that issues identities, intermediate CAs and revocation lists.
pub struct CertificateAuthority {
    params: CertificateParams,
    key: P256Key,
    cert_pem: String,
    seed: Seed,
    label: String,
}

impl CertificateAuthority {
    /// A self-signed root CA named `common_name` for organization `msp_id`.
    pub fn new_root(
        seed: &Seed,
        msp_id: &str,
        common_name: &str,
        not_before: i64,
        not_after: i64,
    ) -> Result<Self, IdentityError> {
        let label = format!("{msp_id}/{common_name}");
        let key = seed.key(&label);
        let params = ca_params(seed, &label, msp_id, common_name, not_before, not_after)?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| issue_err(common_name, e))?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            params,
            key,
            seed: seed.clone(),
            label,
        })
    }

    /// An intermediate CA issued by this CA.
    pub fn new_intermediate(
        &self,
        msp_id: &str,
        common_name: &str,
        not_before: i64,
        not_after: i64,
    ) -> Result<Self, IdentityError> {
        let label = format!("{}/{msp_id}/{common_name}", self.label);
        let key = self.seed.key(&label);
        let params = ca_params(
            &self.seed,
            &label,
            msp_id,
            common_name,
            not_before,
            not_after,
        )?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| issue_err(common_name, e))?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            params,
            key,
            seed: self.seed.clone(),
            label,
        })
    }

    /// The CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> Result<String, IdentityError> {
        self.key.pkcs8_pem()
    }

    /// Issues a leaf certificate for `msp_id` with a fresh key derived from the seed.
    pub fn issue(&self, msp_id: &str, spec: &LeafSpec) -> Result<IssuedIdentity, IdentityError> {
        let kind = if spec.tls_hosts.is_empty() {
            "sign"
        } else {
            "tls"
        };
        let label = format!("{}/{kind}/{}", self.label, spec.common_name);
        let key = self.seed.key(&label);
        let serial = self.seed.serial(&label);
        let mut params = CertificateParams::default();
        let mut ous: Vec<&str> = spec.role.map(Role::default_ou).into_iter().collect();
        ous.extend(spec.extra_organizational_unit.as_deref());
        params.distinguished_name = distinguished_name(msp_id, &ous, &spec.common_name)?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = timestamp(spec.not_before)?;
        params.not_after = timestamp(spec.not_after)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method =
            KeyIdMethod::PreSpecified(self.seed.serial(&format!("{label}/ski")));
        if !spec.tls_hosts.is_empty() {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            for host in &spec.tls_hosts {
                let san = match host.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(
                        host.clone()
                            .try_into()
                            .map_err(|e| issue_err(&spec.common_name, e))?,
                    ),
                };
                params.subject_alt_names.push(san);
            }
        }
        if !spec.attributes.is_empty() {
            let json = serde_json::json!({ "attrs": spec.attributes });
            let oid: Vec<u64> = vec![1, 2, 3, 4, 5, 6, 7, 8, 1];
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &oid,
                    json.to_string().into_bytes(),
                ));
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| issue_err(&spec.common_name, e))?;
        Ok(IssuedIdentity {
            cert_pem: cert.pem(),
            key_pem: key.pkcs8_pem()?,
            serial,
        })
    }

    /// A CRL revoking the given serial numbers, signed by this CA, PEM.
    pub fn revocation_list(
        &self,
        serials: &[Vec<u8>],
        this_update: i64,
    ) -> Result<String, IdentityError> {
        let params = CertificateRevocationListParams {
            this_update: timestamp(this_update)?,
            next_update: timestamp(this_update + 30 * 86_400)?,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| {
                    Ok(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(s),
                        revocation_time: timestamp(this_update)?,
                        reason_code: None,
                        invalidity_date: None,
                    })
                })
                .collect::<Result<_, IdentityError>>()?,
            key_identifier_method: self.params.key_identifier_method.clone(),
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        let crl = params
            .signed_by(&issuer)
            .map_err(|e| issue_err("revocation list", e))?;
        crl.pem().map_err(|e| issue_err("revocation list", e))
    }
}

fn ca_params(
    seed: &Seed,
    label: &str,
    msp_id: &str,
    common_name: &str,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(msp_id, &[], common_name)?;
    params.serial_number = Some(SerialNumber::from_slice(&seed.serial(label)));
    params.not_before = timestamp(not_before)?;
    params.not_after = timestamp(not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::PreSpecified(seed.serial(&format!("{label}/ski")));
    Ok(params)
}

/// `O=msp_id, OU=…, CN=common_name`. rcgen holds one value per attribute type, so a second OU
/// goes under the OU object identifier (2.5.4.11) as a custom type; a third cannot be written.
fn distinguished_name(
    msp_id: &str,
    ous: &[&str],
    common_name: &str,
) -> Result<DistinguishedName, IdentityError> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, msp_id);
    match ous {
        [] => {}
        [ou] => dn.push(DnType::OrganizationalUnitName, *ou),
        [first, second] => {
            dn.push(DnType::OrganizationalUnitName, *first);
            dn.push(DnType::CustomDnType(vec![2, 5, 4, 11]), *second);
        }
        _ => {
            return Err(IdentityError::Issue {
                name: common_name.into(),
                reason: "a certificate can carry at most two OUs here".into(),
            });
        }
    }
    dn.push(DnType::CommonName, common_name);
    Ok(dn)
}

fn timestamp(unix_secs: i64) -> Result<OffsetDateTime, IdentityError> {
    OffsetDateTime::from_unix_timestamp(unix_secs)
        .map_err(|e| IdentityError::Config(format!("time {unix_secs} out of range: {e}")))
}

fn issue_err(name: &str, e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Issue {
        name: name.into(),
        reason: e.to_string(),
    }
}

/// Start of validity for seeded (deterministic) material: 2025-01-01T00:00:00Z.
pub const SEEDED_NOT_BEFORE: i64 = 1_735_689_600;

impl CryptoConfig {
    /// Checks names are usable as folder names and unique.
    pub fn validate(&self) -> Result<(), IdentityError> {
        if self.organizations.is_empty() {
            return Err(IdentityError::Config("no organizations".into()));
        }
        if self.validity_days == 0 {
            return Err(IdentityError::Config(
                "validity_days must be at least 1".into(),
            ));
        }
        let mut msp_ids = std::collections::BTreeSet::new();
        for org in &self.organizations {
            check_name("msp_id", &org.msp_id)?;
            if !msp_ids.insert(&org.msp_id) {
                return Err(IdentityError::Config(format!(
                    "duplicate msp_id '{}'",
                    org.msp_id
                )));
            }
            let mut names = std::collections::BTreeSet::new();
            let all = org
                .peers
                .iter()
                .map(|p| &p.name)
                .chain(org.orderers.iter().map(|o| &o.name))
                .chain(org.admins.iter())
                .chain(org.users.iter().map(|u| &u.name));
            for name in all {
                check_name("identity name", name)?;
                if !names.insert(name) {
                    return Err(IdentityError::Config(format!(
                        "duplicate identity '{name}' in {}",
                        org.msp_id
                    )));
                }
            }
        }
        Ok(())
    }
}

fn check_name(what: &str, name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Config(format!(
            "{what} '{name}' must be 1-64 characters of letters, digits, '.', '-', '_' or '@'"
        )))
    }
}

/// Generates all material of `config` under `out` (see the module docs for the layout).
/// `now_unix_secs` starts the validity window of unseeded material.
pub fn generate(
    config: &CryptoConfig,
    out: &Path,
    now_unix_secs: i64,
) -> Result<(), IdentityError> {
    config.validate()?;
    let (seed, not_before) = match &config.seed {
        Some(text) => (Seed::from_text(text), SEEDED_NOT_BEFORE),
        None => (Seed::random()?, now_unix_secs - 3600),
    };
    let not_after = not_before + i64::from(config.validity_days) * 86_400;
    for org in &config.organizations {
        let dir = out.join("organizations").join(&org.msp_id);
        let ca = CertificateAuthority::new_root(
            &seed,
            &org.msp_id,
            &format!("ca.{}", org.msp_id),
            not_before,
            not_after,
        )?;
        let tlsca = CertificateAuthority::new_root(
            &seed,
            &org.msp_id,
            &format!("tlsca.{}", org.msp_id),
            not_before,
            not_after,
        )?;
        write(&dir.join("ca/ca.pem"), ca.cert_pem())?;
        write_secret(&dir.join("ca/ca.key"), &ca.key_pem()?)?;
        write(&dir.join("tlsca/tlsca.pem"), tlsca.cert_pem())?;
        write_secret(&dir.join("tlsca/tlsca.key"), &tlsca.key_pem()?)?;
        write(&dir.join("msp/cacerts/ca.pem"), ca.cert_pem())?;
        write(&dir.join("msp/tlscacerts/tlsca.pem"), tlsca.cert_pem())?;
        let crls = dir.join("msp/crls");
        std::fs::create_dir_all(&crls).map_err(|e| IdentityError::io("create folder", &crls, e))?;

        let leaf = |name: &str,
                    role: Role,
                    attributes: &BTreeMap<String, String>,
                    tls_hosts: Vec<String>| LeafSpec {
            common_name: name.to_owned(),
            role: Some(role),
            extra_organizational_unit: None,
            attributes: attributes.clone(),
            tls_hosts,
            not_before,
            not_after,
        };
        let none = BTreeMap::new();
        let nodes = org
            .peers
            .iter()
            .map(|n| (n, Role::Peer, "peers"))
            .chain(org.orderers.iter().map(|n| (n, Role::Orderer, "orderers")));
        for (node, role, folder) in nodes {
            let base = dir.join(folder).join(&node.name);
            let sign = ca.issue(&org.msp_id, &leaf(&node.name, role, &none, Vec::new()))?;
            write_msp_identity(&base, &ca, &sign)?;
            let mut hosts = vec![node.name.clone(), "localhost".into(), "127.0.0.1".into()];
            hosts.extend(node.hosts.iter().cloned());
            let tls = tlsca.issue(&org.msp_id, &leaf(&node.name, role, &none, hosts))?;
            write(&base.join("tls/server.crt"), &tls.cert_pem)?;
            write_secret(&base.join("tls/server.key"), &tls.key_pem)?;
            write(&base.join("tls/ca.crt"), tlsca.cert_pem())?;
        }
        let users = org
            .admins
            .iter()
            .map(|name| (name, Role::Admin, &none))
            .chain(
                org.users
                    .iter()
                    .map(|u| (&u.name, Role::Client, &u.attributes)),
            );
        for (name, role, attributes) in users {
            let base = dir.join("users").join(name);
            let common_name = format!("{name}@{}", org.msp_id);
            let sign = ca.issue(
                &org.msp_id,
                &leaf(&common_name, role, attributes, Vec::new()),
            )?;
            write_msp_identity(&base, &ca, &sign)?;
            let tls = tlsca.issue(
                &org.msp_id,
                &leaf(&common_name, role, &none, vec![common_name.clone()]),
            )?;
            write(&base.join("tls/client.crt"), &tls.cert_pem)?;
            write_secret(&base.join("tls/client.key"), &tls.key_pem)?;
            write(&base.join("tls/ca.crt"), tlsca.cert_pem())?;
        }
    }
    Ok(())
}

fn write_msp_identity(
    base: &Path,
    ca: &CertificateAuthority,
    id: &IssuedIdentity,
) -> Result<(), IdentityError> {
    write(&base.join("msp/signcerts/cert.pem"), &id.cert_pem)?;
    write_secret(&base.join("msp/keystore/key.pem"), &id.key_pem)?;
    write(&base.join("msp/cacerts/ca.pem"), ca.cert_pem())
}

fn write(path: &Path, contents: &str) -> Result<(), IdentityError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| IdentityError::io("create folder", parent, e))?;
    }
    std::fs::write(path, contents).map_err(|e| IdentityError::io("write", path, e))
}

/// Writes a private key readable by its owner only.
fn write_secret(path: &Path, contents: &str) -> Result<(), IdentityError> {
    write(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| IdentityError::io("restrict permissions of", path, e))?;
    }
    Ok(())
}
