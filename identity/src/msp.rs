//! Membership service providers: who belongs to an organization and in which role.
//!
//! An [`Msp`] holds one organization's trust anchors (root and intermediate CAs, revocation
//! lists, admin certificates, NodeOU settings) as carried in a channel's config
//! (`msp.FabricMSPConfig`). It turns a certificate into a validated [`Identity`]: the chain
//! reaches a root CA with every signature checked, no certificate in it is revoked or outside
//! its validity at the given time, the leaf is not a CA, and (with NodeOUs) its OU gives a role.
//! An [`MspManager`] holds a channel's MSPs and caches validation results, because the same few
//! client, peer and orderer certificates sign almost everything.

use crate::certificate::{Certificate, RevocationList, pem_blocks};
use crate::error::{IdentityError, SignatureError};
use crate::signature::verify_p256;
use gridledger_proto::msp as pb;
use gridledger_proto::prost::Message;
use std::collections::{BTreeMap, HashMap};
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

    /// The default OU value that marks this role.
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

/// A certificate validated against its MSP.
#[derive(Debug)]
pub struct Identity {
    msp_id: String,
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
        &self.msp_id
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

/// NodeOU settings: which OU value marks which role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOus {
    pub client: String,
    pub peer: String,
    pub admin: String,
    pub orderer: String,
}

impl Default for NodeOus {
    fn default() -> Self {
        NodeOus {
            client: Role::Client.default_ou().into(),
            peer: Role::Peer.default_ou().into(),
            admin: Role::Admin.default_ou().into(),
            orderer: Role::Orderer.default_ou().into(),
        }
    }
}

/// One organization's membership service provider.
#[derive(Debug, Clone)]
pub struct Msp {
    msp_id: String,
    roots: Vec<Certificate>,
    intermediates: Vec<Certificate>,
    admins: Vec<Vec<u8>>,
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
        let mut msp = Msp {
            msp_id: msp_id.clone(),
            roots,
            intermediates: Vec::new(),
            admins: Vec::new(),
            revocation_lists: Vec::new(),
            node_ous: None,
        };
        for ca in intermediates {
            if !ca.is_ca {
                return Err(bad(format!(
                    "intermediate certificate '{}' is not a CA",
                    ca.subject
                )));
            }
            msp.chain_to_root(&ca)
                .map_err(|e| bad(format!("intermediate CA does not chain: {e}")))?;
            msp.intermediates.push(ca);
        }
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
            msp.admins.push(admin.der);
        }
        if let Some(ous) = cfg.fabric_node_ous.as_ref().filter(|o| o.enable) {
            let pick = |id: &Option<pb::FabricOuIdentifier>, role: Role| {
                id.as_ref()
                    .map(|i| i.organizational_unit_identifier.clone())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| role.default_ou().to_owned())
            };
            msp.node_ous = Some(NodeOus {
                client: pick(&ous.client_ou_identifier, Role::Client),
                peer: pick(&ous.peer_ou_identifier, Role::Peer),
                admin: pick(&ous.admin_ou_identifier, Role::Admin),
                orderer: pick(&ous.orderer_ou_identifier, Role::Orderer),
            });
        }
        Ok(msp)
    }

    /// The MSP id (organization name in policies).
    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }

    /// Root CA certificates.
    pub fn root_certificates(&self) -> &[Certificate] {
        &self.roots
    }

    /// NodeOU settings, when enabled.
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
        let role = match &self.node_ous {
            None => None,
            Some(ous) => {
                let role = leaf.organizational_units.iter().find_map(|ou| {
                    [
                        (&ous.admin, Role::Admin),
                        (&ous.peer, Role::Peer),
                        (&ous.orderer, Role::Orderer),
                        (&ous.client, Role::Client),
                    ]
                    .into_iter()
                    .find(|(value, _)| *value == ou)
                    .map(|(_, role)| role)
                });
                match role {
                    Some(role) => Some(role),
                    None => {
                        return Err(IdentityError::NoRole {
                            subject: leaf.subject,
                            msp_id: self.msp_id.clone(),
                        });
                    }
                }
            }
        };
        let is_admin = role == Some(Role::Admin) || self.admins.contains(&leaf.der);
        Ok(Identity {
            msp_id: self.msp_id.clone(),
            role,
            is_admin,
            serialized,
            certificate: leaf,
            valid_from,
            valid_until,
        })
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
            let Some(next) = self
                .intermediates
                .iter()
                .find(|ca| current.is_issued_by(ca) && !chain.iter().any(|c| c.der == ca.der))
            else {
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
/// `admincerts/` (PEM files; all optional except `cacerts/`). NodeOUs are enabled with the OUs
/// `client`, `peer`, `admin`, `orderer`, and the crypto config is SHA2 / SHA256, as in Fabric.
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
    let ou = |role: Role| {
        Some(pb::FabricOuIdentifier {
            certificate: root_certs[0].clone(),
            organizational_unit_identifier: role.default_ou().into(),
        })
    };
    let config = pb::FabricMspConfig {
        name: msp_id.into(),
        root_certs: root_certs.clone(),
        intermediate_certs: read_dir("intermediatecerts")?,
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
