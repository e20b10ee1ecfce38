//! Membership service providers: who belongs to an organization and in which role.
//!
//! An [`Msp`] holds one organization's trust anchors (root and intermediate CAs, revocation
//! lists, admin certificates, NodeOU settings) as carried in a channel's config
//! (`msp.FabricMSPConfig`). It turns a certificate into a validated [`Identity`] with the rules
//! of Fabric's X.509 MSP (v1.4.2 and later):
//!
//! - the chain reaches a root CA with every signature checked; no certificate in it is revoked
//!   or outside its validity at the given time; the leaf is not a CA;
//! - the leaf's issuer is a leaf of the certification tree: a CA that issued one of the MSP's
//!   intermediate CAs may not issue identities itself (such CAs are marked when the MSP is set
//!   up);
//! - with NodeOUs enabled, the leaf carries exactly one OU that the config names as a role
//!   (client, peer, admin, orderer). Only the roles whose identifier the config lists are
//!   recognised — nothing is defaulted — and with none listed NodeOUs are off. An identifier's
//!   `certificate`, when set, must be a root or intermediate CA of the MSP, and that CA must
//!   have issued the identity directly (Fabric compares certification-chain hashes; the chain
//!   above a given CA is fixed, so this is the same test).
//!
//! Every identity has an [`IdentityId`]: its MSP id and the SHA-256 of its certificate with the
//! signature normalised to low-S, Fabric's `IdentityIdentifier`. Re-encodings of one
//! certificate (other PEM wrapping, unknown protobuf fields in the `SerializedIdentity`, the
//! high-S twin of the certificate's signature) share it, so signer de-duplication, IDENTITY
//! principals and the MSP's admin list compare ids, never received bytes.
//!
//! An [`MspManager`] holds a channel's MSPs and caches validation results, because the same few
//! client, peer and orderer certificates sign almost everything.
//!
//! Differences from Fabric: two role identifiers with the same OU value make the configuration
//! invalid here (Fabric accepts them and lets the identity hold several roles); certificates in
//! the admin list are not validated against the MSP at setup, they only mark which identities
//! are admins once those validate.

use crate::certificate::{Certificate, RevocationList, pem_blocks};
use crate::error::{IdentityError, SignatureError};
use crate::signature::verify_p256;
use gridledger_proto::msp as pb;
use gridledger_proto::prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Longest certificate chain accepted (leaf + intermediates + root).
const MAX_CHAIN_LEN: usize = 8;
/// Bound on cached identity validations per channel; the cache is cleared when full.
const IDENTITY_CACHE_CAPACITY: usize = 4096;

/// The role a certificate's NodeOU gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Peer,
    Admin,
    Orderer,
}

impl Role {
    /// All roles, in the order Fabric lists them.
    pub const ALL: [Role; 4] = [Role::Client, Role::Peer, Role::Admin, Role::Orderer];

    /// The OU value that conventionally marks this role (what `cryptogen` and Fabric CA write,
    /// and what [`load_msp_dir`] configures). An MSP recognises only the values its config
    /// names; this is not a fallback.
    pub fn default_ou(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Peer => "peer",
            Role::Admin => "admin",
            Role::Orderer => "orderer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.default_ou())
    }
}

/// Who an identity is: its MSP id and the SHA-256 of its certificate normalised to low-S
/// (Fabric's `IdentityIdentifier`). Every encoding of one certificate under one MSP id has the
/// same id; signers are counted, and IDENTITY principals matched, by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityId {
    msp_id: String,
    certificate_sha256: [u8; 32],
}

impl IdentityId {
    /// The id of `certificate` as a member of `msp_id`.
    pub fn new(msp_id: &str, certificate: &Certificate) -> IdentityId {
        IdentityId {
            msp_id: msp_id.to_owned(),
            certificate_sha256: certificate.low_s_sha256,
        }
    }

    /// The id named by `msp.SerializedIdentity` bytes, without validating the certificate
    /// against any MSP (for IDENTITY principals, which are compared with validated signers).
    pub fn from_serialized(serialized: &[u8]) -> Result<IdentityId, IdentityError> {
        let decoded = pb::SerializedIdentity::decode(serialized)
            .map_err(|e| IdentityError::SerializedIdentity(e.to_string()))?;
        let certificate = Certificate::from_pem(&decoded.id_bytes)?;
        Ok(IdentityId::new(&decoded.mspid, &certificate))
    }

    /// The MSP id.
    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }

    /// SHA-256 of the low-S certificate DER.
    pub fn certificate_sha256(&self) -> &[u8; 32] {
        &self.certificate_sha256
    }
}

impl fmt::Display for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.msp_id,
            hex::encode(self.certificate_sha256)
        )
    }
}

/// A certificate validated against its MSP.
#[derive(Debug)]
pub struct Identity {
    id: IdentityId,
    role: Option<Role>,
    is_admin: bool,
    serialized: Vec<u8>,
    certificate: Certificate,
    /// Intersection of the validity windows of the whole chain, unix seconds.
    valid_from: i64,
    valid_until: i64,
}

impl Identity {
    /// The MSP (organization) this identity belongs to.
    pub fn msp_id(&self) -> &str {
        &self.id.msp_id
    }
    /// The identity's id: MSP id and low-S certificate hash, the same for every encoding.
    pub fn id(&self) -> &IdentityId {
        &self.id
    }
    /// The NodeOU role, when the MSP uses NodeOUs.
    pub fn role(&self) -> Option<Role> {
        self.role
    }
    /// Admin by OU, or listed among the MSP's admin certificates.
    pub fn is_admin(&self) -> bool {
        self.is_admin
    }
    /// The `msp.SerializedIdentity` bytes exactly as received.
    pub fn serialized(&self) -> &[u8] {
        &self.serialized
    }
    /// Subject distinguished name, for messages and explanations.
    pub fn subject(&self) -> &str {
        &self.certificate.subject
    }
    /// The parsed certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }
    /// A certificate attribute (e.g. a delivery point id or meter id).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.certificate.attributes.get(name).map(String::as_str)
    }
    /// All certificate attributes.
    pub fn attributes(&self) -> &BTreeMap<String, String> {
        &self.certificate.attributes
    }
    /// Verifies an ECDSA P-256 / SHA-256 DER signature over `message`; high-S is rejected.
    pub fn verify(&self, message: &[u8], signature_der: &[u8]) -> Result<(), SignatureError> {
        verify_p256(&self.certificate.public_key, message, signature_der)
    }
}

/// One NodeOU identifier of an MSP: the OU value that marks a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOuIdentifier {
    /// The OU value (`organizational_unit_identifier`).
    pub organizational_unit_identifier: String,
    /// When the identifier names a `certificate`: the [`Certificate::low_s_sha256`] of that CA,
    /// which must have issued the identity directly.
    pub certifier_sha256: Option<[u8; 32]>,
}

/// NodeOU settings: which OU value marks which role. A role whose identifier the config does
/// not list is not recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOus {
    pub client: Option<NodeOuIdentifier>,
    pub peer: Option<NodeOuIdentifier>,
    pub admin: Option<NodeOuIdentifier>,
    pub orderer: Option<NodeOuIdentifier>,
}

impl NodeOus {
    /// The identifier configured for `role`, if any.
    pub fn identifier(&self, role: Role) -> Option<&NodeOuIdentifier> {
        match role {
            Role::Client => self.client.as_ref(),
            Role::Peer => self.peer.as_ref(),
            Role::Admin => self.admin.as_ref(),
            Role::Orderer => self.orderer.as_ref(),
        }
    }

    fn slot(&mut self, role: Role) -> &mut Option<NodeOuIdentifier> {
        match role {
            Role::Client => &mut self.client,
            Role::Peer => &mut self.peer,
            Role::Admin => &mut self.admin,
            Role::Orderer => &mut self.orderer,
        }
    }

    /// The role an OU value marks, with its identifier.
    fn role_of(&self, ou: &str) -> Option<(Role, &NodeOuIdentifier)> {
        Role::ALL.into_iter().find_map(|role| {
            self.identifier(role)
                .filter(|id| id.organizational_unit_identifier == ou)
                .map(|id| (role, id))
        })
    }
}

/// One organization's membership service provider.
#[derive(Debug, Clone)]
pub struct Msp {
    msp_id: String,
    roots: Vec<Certificate>,
    intermediates: Vec<Certificate>,
    /// Low-S hashes of the CAs that issued an intermediate CA: internal nodes of the
    /// certification tree, which may not issue identities.
    internal_cas: BTreeSet<[u8; 32]>,
    /// Low-S hashes of the admin certificates.
    admins: BTreeSet<[u8; 32]>,
    revocation_lists: Vec<RevocationList>,
    node_ous: Option<NodeOus>,
}

impl Msp {
    /// Builds an MSP from the `FabricMSPConfig` a channel config carries.
    pub fn from_fabric_config(cfg: &pb::FabricMspConfig) -> Result<Msp, IdentityError> {
        let msp_id = cfg.name.clone();
        if msp_id.is_empty() {
            return Err(IdentityError::MspConfig {
                msp_id,
                reason: "empty MSP name".into(),
            });
        }
        let bad = |reason: String| IdentityError::MspConfig {
            msp_id: msp_id.clone(),
            reason,
        };
        let parse_all = |pems: &[Vec<u8>], what: &str| -> Result<Vec<Certificate>, IdentityError> {
            let mut out = Vec::new();
            for pem in pems {
                for der in pem_blocks(pem, "CERTIFICATE", what)? {
                    out.push(Certificate::from_der(&der)?);
                }
            }
            Ok(out)
        };
        let roots = parse_all(&cfg.root_certs, "root CA certificate")?;
        if roots.is_empty() {
            return Err(bad("no root CA certificate".into()));
        }
        if let Some(root) = roots.iter().find(|r| !r.is_ca || !r.is_issued_by(r)) {
            return Err(bad(format!(
                "root certificate '{}' is not a self-signed CA",
                root.subject
            )));
        }
        let intermediates = parse_all(&cfg.intermediate_certs, "intermediate CA certificate")?;
        if let Some(ca) = intermediates.iter().find(|ca| !ca.is_ca) {
            return Err(bad(format!(
                "intermediate certificate '{}' is not a CA",
                ca.subject
            )));
        }
        let mut msp = Msp {
            msp_id: msp_id.clone(),
            roots,
            intermediates,
            internal_cas: BTreeSet::new(),
            admins: BTreeSet::new(),
            revocation_lists: Vec::new(),
            node_ous: None,
        };
        // Every CA above an intermediate is an internal node of the certification tree.
        let mut internal = BTreeSet::new();
        for ca in &msp.intermediates {
            let chain = msp.chain_to_root(ca).map_err(|e| {
                bad(format!(
                    "intermediate CA '{}' does not chain: {e}",
                    ca.subject
                ))
            })?;
            internal.extend(chain.iter().map(|c| c.low_s_sha256));
        }
        msp.internal_cas = internal;
        let cas: Vec<Certificate> = msp
            .roots
            .iter()
            .chain(&msp.intermediates)
            .cloned()
            .collect();
        for crl in &cfg.revocation_list {
            msp.revocation_lists.push(RevocationList::parse(crl, &cas)?);
        }
        for admin in parse_all(&cfg.admins, "admin certificate")? {
            msp.admins.insert(admin.low_s_sha256);
        }
        if let Some(ous) = cfg.fabric_node_ous.as_ref().filter(|o| o.enable) {
            let mut node_ous = NodeOus::default();
            for (role, identifier) in [
                (Role::Client, &ous.client_ou_identifier),
                (Role::Peer, &ous.peer_ou_identifier),
                (Role::Admin, &ous.admin_ou_identifier),
                (Role::Orderer, &ous.orderer_ou_identifier),
            ] {
                let Some(identifier) = identifier else {
                    continue;
                };
                let value = &identifier.organizational_unit_identifier;
                if let Some((other, _)) = node_ous.role_of(value) {
                    return Err(bad(format!(
                        "the {other} and {role} NodeOU identifiers both use OU '{value}'"
                    )));
                }
                *node_ous.slot(role) = Some(NodeOuIdentifier {
                    organizational_unit_identifier: value.clone(),
                    certifier_sha256: msp.certifier(&identifier.certificate, role)?,
                });
            }
            // With no identifier listed, Fabric turns NodeOU enforcement off.
            if Role::ALL.iter().any(|r| node_ous.identifier(*r).is_some()) {
                msp.node_ous = Some(node_ous);
            }
        }
        Ok(msp)
    }

    /// Resolves a NodeOU identifier's `certificate` (PEM; empty means any CA) to the low-S
    /// hash of one of this MSP's CAs.
    fn certifier(&self, pem: &[u8], role: Role) -> Result<Option<[u8; 32]>, IdentityError> {
        if pem.is_empty() {
            return Ok(None);
        }
        let bad = |reason: String| IdentityError::MspConfig {
            msp_id: self.msp_id.clone(),
            reason,
        };
        let cert = Certificate::from_pem(pem)?;
        let digest = cert.low_s_sha256;
        let is_root = self.roots.iter().any(|c| c.low_s_sha256 == digest);
        let is_intermediate = self.intermediates.iter().any(|c| c.low_s_sha256 == digest);
        if !is_root && !is_intermediate {
            return Err(bad(format!(
                "the {role} NodeOU identifier names certificate '{}', which is not a root or \
                 intermediate CA of this MSP",
                cert.subject
            )));
        }
        if !is_root && self.internal_cas.contains(&digest) {
            return Err(bad(format!(
                "the {role} NodeOU identifier names CA '{}', which issued another intermediate \
                 CA and so cannot issue identities",
                cert.subject
            )));
        }
        Ok(Some(digest))
    }

    /// The MSP id (organization name in policies).
    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }

    /// Root CA certificates.
    pub fn root_certificates(&self) -> &[Certificate] {
        &self.roots
    }

    /// NodeOU settings, when enforced (enabled, with at least one role identifier).
    pub fn node_ous(&self) -> Option<&NodeOus> {
        self.node_ous.as_ref()
    }

    /// Validates a PEM certificate as an identity of this MSP at `now_unix_secs`.
    /// `serialized` is kept verbatim as the identity's wire form.
    pub fn validate(
        &self,
        cert_pem: &[u8],
        serialized: Vec<u8>,
        now_unix_secs: u64,
    ) -> Result<Identity, IdentityError> {
        let leaf = Certificate::from_pem(cert_pem)?;
        if leaf.is_ca {
            return Err(IdentityError::CaAsLeaf {
                subject: leaf.subject,
            });
        }
        let chain = self.chain_to_root(&leaf)?;
        let untrusted = |reason: String| IdentityError::UntrustedChain {
            subject: leaf.subject.clone(),
            msp_id: self.msp_id.clone(),
            reason,
        };
        let Some(issuer) = chain.first().copied() else {
            return Err(untrusted("empty certification chain".into()));
        };
        if self.internal_cas.contains(&issuer.low_s_sha256) {
            return Err(untrusted(format!(
                "its issuer '{}' also issued an intermediate CA of this MSP; identities must be \
                 issued by a CA at the bottom of the certification tree",
                issuer.subject
            )));
        }
        let mut valid_from = leaf.not_before;
        let mut valid_until = leaf.not_after;
        for cert in std::iter::once(&leaf).chain(chain.iter().copied()) {
            valid_from = valid_from.max(cert.not_before);
            valid_until = valid_until.min(cert.not_after);
            if !cert.is_valid_at(now_unix_secs) {
                return Err(IdentityError::OutsideValidity {
                    subject: cert.subject.clone(),
                    at_unix_secs: now_unix_secs,
                    not_before: cert.not_before,
                    not_after: cert.not_after,
                });
            }
            if self.revocation_lists.iter().any(|crl| crl.revokes(cert)) {
                return Err(IdentityError::Revoked {
                    subject: cert.subject.clone(),
                    serial: cert.serial_hex(),
                    msp_id: self.msp_id.clone(),
                });
            }
        }
        let role = self.role_of(&leaf, issuer)?;
        let id = IdentityId::new(&self.msp_id, &leaf);
        let is_admin = role == Some(Role::Admin) || self.admins.contains(&id.certificate_sha256);
        Ok(Identity {
            id,
            role,
            is_admin,
            serialized,
            certificate: leaf,
            valid_from,
            valid_until,
        })
    }

    /// The NodeOU role of `leaf` (issued directly by `issuer`): `None` without NodeOUs, else
    /// exactly one role OU is required (Fabric's `validateIdentityOUsV142`).
    fn role_of(
        &self,
        leaf: &Certificate,
        issuer: &Certificate,
    ) -> Result<Option<Role>, IdentityError> {
        let Some(ous) = &self.node_ous else {
            return Ok(None);
        };
        let mut found = Vec::new();
        for ou in &leaf.organizational_units {
            let Some((role, identifier)) = ous.role_of(ou) else {
                continue;
            };
            if identifier
                .certifier_sha256
                .is_some_and(|certifier| certifier != issuer.low_s_sha256)
            {
                return Err(IdentityError::RoleNotCertified {
                    subject: leaf.subject.clone(),
                    msp_id: self.msp_id.clone(),
                    role,
                    issuer: issuer.subject.clone(),
                });
            }
            found.push(role);
        }
        match found.as_slice() {
            [] => Err(IdentityError::NoRole {
                subject: leaf.subject.clone(),
                msp_id: self.msp_id.clone(),
            }),
            [role] => Ok(Some(*role)),
            several => Err(IdentityError::SeveralRoles {
                subject: leaf.subject.clone(),
                msp_id: self.msp_id.clone(),
                roles: several
                    .iter()
                    .map(Role::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Finds the chain above `cert` (issuers up to and including a root), checking signatures.
    fn chain_to_root<'a>(
        &'a self,
        cert: &Certificate,
    ) -> Result<Vec<&'a Certificate>, IdentityError> {
        let untrusted = |reason: &str| IdentityError::UntrustedChain {
            subject: cert.subject.clone(),
            msp_id: self.msp_id.clone(),
            reason: reason.into(),
        };
        let mut chain: Vec<&Certificate> = Vec::new();
        let mut current = cert;
        loop {
            if let Some(root) = self.roots.iter().find(|r| current.is_issued_by(r)) {
                chain.push(root);
                return Ok(chain);
            }
            let Some(next) = self.intermediates.iter().find(|ca| {
                current.is_issued_by(ca)
                    && ca.der != cert.der
                    && !chain.iter().any(|c| c.der == ca.der)
            }) else {
                return Err(untrusted(
                    "no CA of this MSP issued it (or the issuer's signature is wrong)",
                ));
            };
            chain.push(next);
            if chain.len() >= MAX_CHAIN_LEN {
                return Err(untrusted("chain too long"));
            }
            current = next;
        }
    }
}

/// The MSPs of one channel, with a cache of validated identities.
#[derive(Debug)]
pub struct MspManager {
    msps: HashMap<String, Msp>,
    cache: RwLock<HashMap<Vec<u8>, Arc<Identity>>>,
}

impl MspManager {
    /// A manager over the given MSPs (later ones with the same id replace earlier ones).
    pub fn new(msps: impl IntoIterator<Item = Msp>) -> MspManager {
        MspManager {
            msps: msps.into_iter().map(|m| (m.msp_id.clone(), m)).collect(),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The MSP with this id.
    pub fn msp(&self, msp_id: &str) -> Option<&Msp> {
        self.msps.get(msp_id)
    }

    /// MSP ids, sorted.
    pub fn msp_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.msps.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Decodes `msp.SerializedIdentity` bytes and validates the certificate with its MSP at
    /// `now_unix_secs`. Successful validations are cached; the time window is rechecked on
    /// every hit.
    pub fn deserialize_identity(
        &self,
        serialized: &[u8],
        now_unix_secs: u64,
    ) -> Result<Arc<Identity>, IdentityError> {
        if let Some(hit) = self
            .cache
            .read()
            .ok()
            .and_then(|c| c.get(serialized).cloned())
        {
            let now = i64::try_from(now_unix_secs).unwrap_or(i64::MAX);
            if hit.valid_from <= now && now <= hit.valid_until {
                return Ok(hit);
            }
            // Fall through: revalidate to report which certificate is out of its window.
        }
        let decoded = pb::SerializedIdentity::decode(serialized)
            .map_err(|e| IdentityError::SerializedIdentity(e.to_string()))?;
        let msp = self
            .msps
            .get(&decoded.mspid)
            .ok_or_else(|| IdentityError::UnknownMsp(decoded.mspid.clone()))?;
        let identity =
            Arc::new(msp.validate(&decoded.id_bytes, serialized.to_vec(), now_unix_secs)?);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= IDENTITY_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(serialized.to_vec(), identity.clone());
        }
        Ok(identity)
    }
}

/// Encodes `msp.SerializedIdentity{mspid, id_bytes}`.
pub fn serialize_identity(msp_id: &str, cert_pem: &[u8]) -> Vec<u8> {
    pb::SerializedIdentity {
        mspid: msp_id.to_owned(),
        id_bytes: cert_pem.to_vec(),
    }
    .encode_to_vec()
}

/// Reads a Fabric-style MSP folder into the `FabricMSPConfig` a channel config carries:
/// `cacerts/`, `intermediatecerts/`, `tlscacerts/`, `tlsintermediatecerts/`, `crls/`,
/// `admincerts/` (PEM files; all optional except `cacerts/`). NodeOUs are enabled with all four
/// identifiers written out — OUs `client`, `peer`, `admin`, `orderer` — each certified by the
/// first root CA when the folder has no intermediate CAs (what `cryptogen` writes), and by any
/// CA of the MSP when it has some (the identities are then issued by an intermediate). The
/// crypto config is SHA2 / SHA256, as in Fabric.
pub fn load_msp_dir(msp_id: &str, dir: &Path) -> Result<pb::FabricMspConfig, IdentityError> {
    let read_dir = |sub: &str| -> Result<Vec<Vec<u8>>, IdentityError> {
        let path = dir.join(sub);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .map_err(|e| IdentityError::io("read MSP folder", &path, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read(p).map_err(|e| IdentityError::io("read", p, e)))
            .collect()
    };
    let root_certs = read_dir("cacerts")?;
    if root_certs.is_empty() {
        return Err(IdentityError::MspConfig {
            msp_id: msp_id.into(),
            reason: format!(
                "no root CA certificate in {}",
                dir.join("cacerts").display()
            ),
        });
    }
    let intermediate_certs = read_dir("intermediatecerts")?;
    let certifier = if intermediate_certs.is_empty() {
        root_certs[0].clone()
    } else {
        Vec::new()
    };
    let ou = |role: Role| {
        Some(pb::FabricOuIdentifier {
            certificate: certifier.clone(),
            organizational_unit_identifier: role.default_ou().into(),
        })
    };
    let config = pb::FabricMspConfig {
        name: msp_id.into(),
        root_certs: root_certs.clone(),
        intermediate_certs,
        admins: read_dir("admincerts")?,
        revocation_list: read_dir("crls")?,
        signing_identity: None,
        organizational_unit_identifiers: Vec::new(),
        crypto_config: Some(pb::FabricCryptoConfig {
            signature_hash_family: "SHA2".into(),
            identity_identifier_hash_function: "SHA256".into(),
        }),
        tls_root_certs: read_dir("tlscacerts")?,
        tls_intermediate_certs: read_dir("tlsintermediatecerts")?,
        fabric_node_ous: Some(pb::FabricNodeOUs {
            enable: true,
            client_ou_identifier: ou(Role::Client),
            peer_ou_identifier: ou(Role::Peer),
            admin_ou_identifier: ou(Role::Admin),
            orderer_ou_identifier: ou(Role::Orderer),
        }),
    };
    // Fail early, with the folder named, on material that would not make a working MSP.
    Msp::from_fabric_config(&config)?;
    Ok(config)
}
