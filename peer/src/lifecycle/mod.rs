//! The chaincode lifecycle: Fabric's `_lifecycle` system chaincode.
//!
//! Functions (Fabric's names; one argument, the encoded `lifecycle.<Function>Args`, and the
//! encoded `<Function>Result` as the response payload):
//!
//! - peer-local, on a proposal with an empty channel id, signed by an admin of the peer's
//!   organization: `InstallChaincode`, `QueryInstalledChaincode`, `QueryInstalledChaincodes`,
//!   `GetInstalledChaincodePackage` (packages: [`package`]);
//! - on a channel: `ApproveChaincodeDefinitionForMyOrg` (an org admin; endorsed by the org's
//!   own peers), `CheckCommitReadiness`, `CommitChaincodeDefinition`,
//!   `QueryApprovedChaincodeDefinition`, `QueryChaincodeDefinition`,
//!   `QueryChaincodeDefinitions`.
//!
//! World state of the `_lifecycle` namespace:
//!
//! - committed definitions in Fabric's own layout: `namespaces/metadata/<name>` (a
//!   `StateMetadata`) and `namespaces/fields/<name>/{Sequence,EndorsementInfo,ValidationInfo,Collections}`
//!   (each a `StateData`), so every peer reads the same definitions from its ledger and
//!   `gridledger ledger verify` learns them like Fabric's;
//! - approvals, in a simplified **public** form (Fabric keeps them as private data in each
//!   organization's implicit collection, of which only hashes reach the blocks):
//!   `approvals/<name>/<sequence>/<MSP id>` holds the organization's
//!   `ApproveChaincodeDefinitionForMyOrgArgs` (the package id included), and
//!   `agreements/<name>/<sequence>/<definition hash>/<MSP id>` marks that the organization
//!   approved exactly the definition with that hash ([`definition_hash`]).
//!
//! Rules (enforced at validation, see `validation::endorsement`): writes to an organization's
//! `approvals/…` and `agreements/…` keys need that organization's endorsement; a commit's
//! definition writes need `/Channel/Application/LifecycleEndorsement` satisfied by the
//! endorsements of the organizations whose agreement for that very definition the commit
//! read (MVCC makes sure those reads are still current when the commit is validated). At
//! endorsement, a peer endorses a commit only when its own organization approved the
//! definition, and only for sequence = committed sequence + 1: an upgrade is a commit of the
//! next sequence; re-approving a sequence replaces the organization's earlier approval of it.

pub mod local;
pub mod package;

use crate::validation::{ChaincodeDefinition, EndorsementPolicy, LIFECYCLE_NAMESPACE};
use gridledger_chaincode::{Chaincode, ChaincodeStub, error, success};
use gridledger_proto::lifecycle as lc;
use gridledger_proto::prost::Message;
use gridledger_proto::protos;
use ring::digest;
use std::collections::BTreeMap;

/// Prefix of the keys holding committed definitions' metadata.
pub const METADATA_PREFIX: &str = "namespaces/metadata/";
/// Prefix of the keys holding committed definitions' fields.
pub const FIELDS_PREFIX: &str = "namespaces/fields/";
/// Prefix of the organizations' approvals.
pub const APPROVALS_PREFIX: &str = "approvals/";
/// Prefix of the agreement markers (organization approved the definition with this hash).
pub const AGREEMENTS_PREFIX: &str = "agreements/";
/// The datatype of a committed definition's metadata.
const DEFINITION_TYPE: &str = "ChaincodeDefinition";
/// The fields of a committed definition, in the order their values are hashed.
pub const FIELDS: [&str; 4] = [
    "Sequence",
    "EndorsementInfo",
    "ValidationInfo",
    "Collections",
];
/// The value of an agreement marker.
const AGREED: &[u8] = b"approved";
/// The version `_lifecycle` answers with in its chaincode actions (Fabric's system chaincode
/// version).
pub const SYSCC_VERSION: &str = "syscc";
/// The channel policy a chaincode without an explicit endorsement policy gets.
pub const DEFAULT_ENDORSEMENT_POLICY: &str = "/Channel/Application/Endorsement";

/// A committed chaincode definition (the fields of `CommitChaincodeDefinitionArgs`).
pub type Definition = lc::CommitChaincodeDefinitionArgs;

/// Fabric's chaincode name rule `^[a-zA-Z0-9]+([-_][a-zA-Z0-9]+)*$`.
pub fn valid_chaincode_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .split(['-', '_'])
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Fabric's version rule `^[A-Za-z0-9_.+-]+$`.
pub fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
}

/// The key of an organization's approval of sequence `sequence` of chaincode `name`.
pub fn approval_key(name: &str, sequence: i64, msp_id: &str) -> String {
    format!("{APPROVALS_PREFIX}{name}/{sequence}/{msp_id}")
}

/// The key marking that `msp_id` approved the definition whose hash is `hash`.
pub fn agreement_key(name: &str, sequence: i64, hash: &str, msp_id: &str) -> String {
    format!("{AGREEMENTS_PREFIX}{name}/{sequence}/{hash}/{msp_id}")
}

/// The organization an `approvals/…` or `agreements/…` key belongs to, if it is one.
pub fn organization_of_key(key: &str) -> Option<&str> {
    let rest = key
        .strip_prefix(APPROVALS_PREFIX)
        .or_else(|| key.strip_prefix(AGREEMENTS_PREFIX))?;
    rest.rsplit_once('/').map(|(_, msp)| msp)
}

/// `(name, sequence, hash, msp)` of an agreement key.
pub fn parse_agreement_key(key: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = key.strip_prefix(AGREEMENTS_PREFIX)?.splitn(4, '/');
    Some((parts.next()?, parts.next()?, parts.next()?, parts.next()?))
}

/// `(name, field)` of a definition field key.
pub fn parse_field_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(FIELDS_PREFIX)?.split_once('/')
}

fn state_bytes(bytes: Vec<u8>) -> Vec<u8> {
    lc::StateData {
        r#type: Some(lc::state_data::Type::Bytes(bytes)),
    }
    .encode_to_vec()
}

/// The value of each field key of a definition, in [`FIELDS`] order.
pub fn field_values(def: &Definition) -> [(&'static str, Vec<u8>); 4] {
    [
        (
            "Sequence",
            lc::StateData {
                r#type: Some(lc::state_data::Type::Int64(def.sequence)),
            }
            .encode_to_vec(),
        ),
        (
            "EndorsementInfo",
            state_bytes(
                lc::ChaincodeEndorsementInfo {
                    version: def.version.clone(),
                    init_required: def.init_required,
                    endorsement_plugin: def.endorsement_plugin.clone(),
                }
                .encode_to_vec(),
            ),
        ),
        (
            "ValidationInfo",
            state_bytes(
                lc::ChaincodeValidationInfo {
                    validation_plugin: def.validation_plugin.clone(),
                    validation_parameter: def.validation_parameter.clone(),
                }
                .encode_to_vec(),
            ),
        ),
        (
            "Collections",
            state_bytes(
                def.collections
                    .as_ref()
                    .map(Message::encode_to_vec)
                    .unwrap_or_default(),
            ),
        ),
    ]
}

/// Hex SHA-256 over the definition's field values (each length-prefixed, in [`FIELDS`]
/// order): what approvals and commits are matched by. `None` when a field is missing.
pub fn hash_of_fields<'a>(mut value: impl FnMut(&str) -> Option<&'a [u8]>) -> Option<String> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for field in FIELDS {
        let bytes = value(field)?;
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    }
    Some(hex::encode(ctx.finish()))
}

/// The hash approvals of `def` are recorded under.
pub fn definition_hash(def: &Definition) -> String {
    let values = field_values(def);
    hash_of_fields(|field| {
        values
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_slice())
    })
    .unwrap_or_default()
}

/// The `(key, value)` writes that commit `def`.
pub fn definition_writes(def: &Definition) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![(
        format!("{METADATA_PREFIX}{}", def.name),
        lc::StateMetadata {
            datatype: DEFINITION_TYPE.into(),
            fields: FIELDS.iter().map(|f| (*f).to_string()).collect(),
        }
        .encode_to_vec(),
    )];
    for (field, value) in field_values(def) {
        out.push((format!("{FIELDS_PREFIX}{}/{field}", def.name), value));
    }
    out
}

/// Reads one `_lifecycle` key: its value, `None` when absent, or why it could not be read.
pub type StateGetter<'a> = dyn FnMut(&str) -> Result<Option<Vec<u8>>, String> + 'a;

/// Reads the committed definition of `name` through `get`; `None` when it has none.
pub fn read_definition(
    name: &str,
    get: &mut StateGetter<'_>,
) -> Result<Option<Definition>, String> {
    let Some(metadata) = get(&format!("{METADATA_PREFIX}{name}"))? else {
        return Ok(None);
    };
    let bad = |what: &str, e: &dyn std::fmt::Display| format!("_lifecycle {what} of {name}: {e}");
    let metadata =
        lc::StateMetadata::decode(metadata.as_slice()).map_err(|e| bad("metadata", &e))?;
    if metadata.datatype != DEFINITION_TYPE {
        return Err(bad(
            "metadata",
            &format!("datatype {:?}", metadata.datatype),
        ));
    }
    let mut field = |f: &str| -> Result<Option<lc::state_data::Type>, String> {
        get(&format!("{FIELDS_PREFIX}{name}/{f}"))?
            .map(|v| lc::StateData::decode(v.as_slice()).map_err(|e| bad(f, &e)))
            .transpose()
            .map(|d| d.and_then(|d| d.r#type))
    };
    use lc::state_data::Type;
    let sequence = match field("Sequence")? {
        Some(Type::Int64(n)) => n,
        None => 0,
        Some(_) => return Err(bad("Sequence", &"not an Int64")),
    };
    let bytes = |t: Option<Type>| match t {
        Some(Type::Bytes(b)) => b,
        _ => Vec::new(),
    };
    let endorsement =
        lc::ChaincodeEndorsementInfo::decode(bytes(field("EndorsementInfo")?).as_slice())
            .map_err(|e| bad("EndorsementInfo", &e))?;
    let validation =
        lc::ChaincodeValidationInfo::decode(bytes(field("ValidationInfo")?).as_slice())
            .map_err(|e| bad("ValidationInfo", &e))?;
    let collections = bytes(field("Collections")?);
    let collections = if collections.is_empty() {
        None
    } else {
        Some(
            protos::CollectionConfigPackage::decode(collections.as_slice())
                .map_err(|e| bad("Collections", &e))?,
        )
    };
    Ok(Some(Definition {
        sequence,
        name: name.into(),
        version: endorsement.version,
        endorsement_plugin: endorsement.endorsement_plugin,
        validation_plugin: validation.validation_plugin,
        validation_parameter: validation.validation_parameter,
        collections,
        init_required: endorsement.init_required,
    }))
}

/// Every committed definition in a ledger snapshot, by name. Definitions that do not decode
/// are skipped (with a log line): every peer skips the same ones.
pub fn committed_definitions(
    snapshot: &gridledger_ledger::StateSnapshot,
) -> Result<BTreeMap<String, Definition>, String> {
    let end = format!("{}\u{10FFFF}", METADATA_PREFIX);
    let names: Vec<String> = snapshot
        .range(LIFECYCLE_NAMESPACE, METADATA_PREFIX, &end, usize::MAX)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|(key, _)| key.strip_prefix(METADATA_PREFIX).map(str::to_owned))
        .collect();
    let mut out = BTreeMap::new();
    for name in names {
        let mut get = |key: &str| {
            snapshot
                .get(LIFECYCLE_NAMESPACE, key)
                .map(|v| v.map(|v| v.value))
                .map_err(|e| e.to_string())
        };
        match read_definition(&name, &mut get) {
            Ok(Some(def)) => {
                out.insert(name, def);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(chaincode = %name, error = %e, "ignoring an undecodable chaincode definition")
            }
        }
    }
    Ok(out)
}

/// The endorsement policy a definition's `validation_parameter` (an encoded
/// `protos.ApplicationPolicy`) names; empty means `/Channel/Application/Endorsement`.
pub fn endorsement_policy(validation_parameter: &[u8]) -> Result<EndorsementPolicy, String> {
    if validation_parameter.is_empty() {
        return Ok(EndorsementPolicy::ChannelPolicy(
            DEFAULT_ENDORSEMENT_POLICY.into(),
        ));
    }
    let policy = protos::ApplicationPolicy::decode(validation_parameter)
        .map_err(|e| format!("the validation parameter is not an ApplicationPolicy: {e}"))?;
    use protos::application_policy::Type;
    match policy.r#type {
        Some(Type::SignaturePolicy(env)) => Ok(EndorsementPolicy::Signature(env)),
        Some(Type::ChannelConfigPolicyReference(path)) if path.starts_with('/') => {
            Ok(EndorsementPolicy::ChannelPolicy(path))
        }
        Some(Type::ChannelConfigPolicyReference(name)) if !name.is_empty() => Ok(
            EndorsementPolicy::ChannelPolicy(format!("/Channel/Application/{name}")),
        ),
        _ => Err("the application policy is empty".into()),
    }
}

/// The validation view of a committed definition.
pub fn validation_definition(def: &Definition) -> Result<ChaincodeDefinition, String> {
    Ok(ChaincodeDefinition {
        name: def.name.clone(),
        version: def.version.clone(),
        endorsement: endorsement_policy(&def.validation_parameter)?,
        collections: crate::private::collections(def.collections.as_ref(), None)
            .map_err(|e| e.to_string())?,
    })
}

/// `ApplicationPolicy` bytes for a policy given as Fabric signature-policy text or as a
/// channel policy path (`/Channel/Application/Endorsement`).
pub fn application_policy(policy: &str) -> Result<Vec<u8>, String> {
    use protos::application_policy::Type;
    let policy = policy.trim();
    let kind = if policy.starts_with('/') {
        Type::ChannelConfigPolicyReference(policy.into())
    } else {
        Type::SignaturePolicy(
            gridledger_channels::policy::parse(policy).map_err(|e| e.render(policy))?,
        )
    };
    Ok(protos::ApplicationPolicy { r#type: Some(kind) }.encode_to_vec())
}

/// The definition part of an approval (everything but the package source).
pub fn approved_definition(a: &lc::ApproveChaincodeDefinitionForMyOrgArgs) -> Definition {
    Definition {
        sequence: a.sequence,
        name: a.name.clone(),
        version: a.version.clone(),
        endorsement_plugin: a.endorsement_plugin.clone(),
        validation_plugin: a.validation_plugin.clone(),
        validation_parameter: a.validation_parameter.clone(),
        collections: a.collections.clone(),
        init_required: a.init_required,
    }
}

fn readiness_definition(a: lc::CheckCommitReadinessArgs) -> Definition {
    Definition {
        sequence: a.sequence,
        name: a.name,
        version: a.version,
        endorsement_plugin: a.endorsement_plugin,
        validation_plugin: a.validation_plugin,
        validation_parameter: a.validation_parameter,
        collections: a.collections,
        init_required: a.init_required,
    }
}

/// The package id an organization's approval names, if any.
pub fn approved_package_id(a: &lc::ApproveChaincodeDefinitionForMyOrgArgs) -> Option<&str> {
    match a.source.as_ref()?.r#type.as_ref()? {
        lc::chaincode_source::Type::LocalPackage(local) => Some(local.package_id.as_str()),
        lc::chaincode_source::Type::Unavailable(_) => None,
    }
}

/// `_lifecycle` on one channel, as one peer of `msp_id` runs it.
pub struct LifecycleChaincode {
    /// The peer's organization.
    pub msp_id: String,
    /// The channel's application organizations (MSP ids).
    pub organizations: Vec<String>,
    /// Whether the proposal's creator is an admin of its MSP.
    pub creator_is_admin: bool,
}

/// A failure the chaincode reports as its status-500 message.
type Failure = String;

fn decode_arg<M: Message + Default>(
    stub: &ChaincodeStub<'_>,
    function: &str,
) -> Result<M, Failure> {
    let raw = stub
        .get_args()
        .get(1)
        .ok_or_else(|| format!("{function} takes one argument, the encoded {function}Args"))?;
    M::decode(raw.as_slice()).map_err(|e| format!("cannot decode {function}Args: {e}"))
}

impl LifecycleChaincode {
    fn get(stub: &mut ChaincodeStub<'_>, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        stub.get_state(key).map_err(|e| e.to_string())
    }

    fn committed(stub: &mut ChaincodeStub<'_>, name: &str) -> Result<Option<Definition>, Failure> {
        let mut get = |key: &str| stub.get_state(key).map_err(|e| e.to_string());
        read_definition(name, &mut get)
    }

    fn check_definition(&self, def: &Definition) -> Result<(), Failure> {
        if !valid_chaincode_name(&def.name) || def.name.starts_with('_') {
            return Err(format!(
                "invalid chaincode name {:?}: names match [a-zA-Z0-9]+([-_][a-zA-Z0-9]+)*",
                def.name
            ));
        }
        if !valid_version(&def.version) {
            return Err(format!(
                "invalid chaincode version {:?}: versions match [A-Za-z0-9_.+-]+",
                def.version
            ));
        }
        if def.sequence < 1 {
            return Err(format!("sequence must be at least 1, got {}", def.sequence));
        }
        endorsement_policy(&def.validation_parameter)?;
        crate::private::collections(def.collections.as_ref(), Some(&self.organizations))
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// An upgrade keeps the committed definition's collections (Fabric's rule).
    fn check_collections_upgrade(
        current: Option<&Definition>,
        def: &Definition,
    ) -> Result<(), Failure> {
        let Some(current) = current else {
            return Ok(());
        };
        let old = crate::private::collections(current.collections.as_ref(), None)
            .map_err(|e| e.to_string())?;
        let new = crate::private::collections(def.collections.as_ref(), None)
            .map_err(|e| e.to_string())?;
        crate::private::check_upgrade(&old, &new)
    }

    /// The committed sequence of `name` and the sequence a new definition must have.
    fn next_sequence(
        stub: &mut ChaincodeStub<'_>,
        def: &Definition,
    ) -> Result<(Option<Definition>, i64), Failure> {
        let current = Self::committed(stub, &def.name)?;
        let next = current.as_ref().map_or(1, |c| c.sequence + 1);
        Ok((current, next))
    }

    /// MSP id → whether the organization approved exactly `def`.
    fn approvals(
        &self,
        stub: &mut ChaincodeStub<'_>,
        def: &Definition,
    ) -> Result<BTreeMap<String, bool>, Failure> {
        let hash = definition_hash(def);
        let mut out = BTreeMap::new();
        for msp in &self.organizations {
            let agreed =
                Self::get(stub, &agreement_key(&def.name, def.sequence, &hash, msp))?.is_some();
            out.insert(msp.clone(), agreed);
        }
        Ok(out)
    }

    fn approve(&self, stub: &mut ChaincodeStub<'_>) -> Result<Vec<u8>, Failure> {
        let args: lc::ApproveChaincodeDefinitionForMyOrgArgs =
            decode_arg(stub, "ApproveChaincodeDefinitionForMyOrg")?;
        if stub.creator_msp_id() != self.msp_id || !self.creator_is_admin {
            return Err(format!(
                "only an admin of {} may approve a chaincode definition for it through this peer (the creator is of {}{})",
                self.msp_id,
                stub.creator_msp_id(),
                if self.creator_is_admin {
                    ""
                } else {
                    ", not an admin"
                }
            ));
        }
        let def = approved_definition(&args);
        self.check_definition(&def)?;
        let (current, next) = Self::next_sequence(stub, &def)?;
        Self::check_collections_upgrade(current.as_ref(), &def)?;
        match &current {
            Some(c) if c.sequence == def.sequence && *c != def => {
                return Err(format!(
                    "attempted to redefine the current committed sequence ({}) for namespace {} with different parameters; approve sequence {next} to change the definition",
                    c.sequence, def.name
                ));
            }
            // Re-approving the committed definition unchanged (to name another package).
            Some(c) if c.sequence == def.sequence => {}
            _ if def.sequence != next => {
                return Err(format!(
                    "requested sequence is {}, but new definition must be sequence {next}",
                    def.sequence
                ));
            }
            _ => {}
        }
        let hash = definition_hash(&def);
        let key = approval_key(&def.name, def.sequence, &self.msp_id);
        if let Some(previous) = Self::get(stub, &key)? {
            let previous = lc::ApproveChaincodeDefinitionForMyOrgArgs::decode(previous.as_slice())
                .map_err(|e| format!("the previous approval does not decode: {e}"))?;
            let previous_hash = definition_hash(&approved_definition(&previous));
            if previous_hash != hash {
                stub.del_state(&agreement_key(
                    &def.name,
                    def.sequence,
                    &previous_hash,
                    &self.msp_id,
                ))
                .map_err(|e| e.to_string())?;
            }
        }
        stub.put_state(&key, &args.encode_to_vec())
            .map_err(|e| e.to_string())?;
        stub.put_state(
            &agreement_key(&def.name, def.sequence, &hash, &self.msp_id),
            AGREED,
        )
        .map_err(|e| e.to_string())?;
        Ok(lc::ApproveChaincodeDefinitionForMyOrgResult {}.encode_to_vec())
    }

    fn readiness(
        &self,
        stub: &mut ChaincodeStub<'_>,
        def: &Definition,
    ) -> Result<BTreeMap<String, bool>, Failure> {
        self.check_definition(def)?;
        let (current, next) = Self::next_sequence(stub, def)?;
        Self::check_collections_upgrade(current.as_ref(), def)?;
        if def.sequence != next {
            return Err(format!(
                "requested sequence is {}, but new definition must be sequence {next}",
                def.sequence
            ));
        }
        self.approvals(stub, def)
    }

    fn commit(&self, stub: &mut ChaincodeStub<'_>) -> Result<Vec<u8>, Failure> {
        let def: Definition = decode_arg(stub, "CommitChaincodeDefinition")?;
        let approvals = self.readiness(stub, &def)?;
        if approvals.get(&self.msp_id) != Some(&true) {
            let missing: Vec<&str> = approvals
                .iter()
                .filter(|(_, ok)| !**ok)
                .map(|(m, _)| m.as_str())
                .collect();
            return Err(format!(
                "chaincode definition not agreed to by this org ({}); organizations that have not approved it: {}",
                self.msp_id,
                missing.join(", ")
            ));
        }
        for (key, value) in definition_writes(&def) {
            stub.put_state(&key, &value).map_err(|e| e.to_string())?;
        }
        Ok(lc::CommitChaincodeDefinitionResult {}.encode_to_vec())
    }

    fn query_definition(&self, stub: &mut ChaincodeStub<'_>) -> Result<Vec<u8>, Failure> {
        let args: lc::QueryChaincodeDefinitionArgs = decode_arg(stub, "QueryChaincodeDefinition")?;
        let def = Self::committed(stub, &args.name)?
            .ok_or_else(|| format!("namespace {} is not defined", args.name))?;
        let approvals = self.approvals(stub, &def)?;
        Ok(lc::QueryChaincodeDefinitionResult {
            sequence: def.sequence,
            version: def.version,
            endorsement_plugin: def.endorsement_plugin,
            validation_plugin: def.validation_plugin,
            validation_parameter: def.validation_parameter,
            collections: def.collections,
            init_required: def.init_required,
            approvals,
        }
        .encode_to_vec())
    }

    fn query_definitions(&self, stub: &mut ChaincodeStub<'_>) -> Result<Vec<u8>, Failure> {
        let end = format!("{METADATA_PREFIX}\u{10FFFF}");
        let names: Vec<String> = stub
            .get_state_by_range(METADATA_PREFIX, &end)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|(key, _)| key.strip_prefix(METADATA_PREFIX).map(str::to_owned))
            .collect();
        let mut chaincode_definitions = Vec::new();
        for name in names {
            if let Some(def) = Self::committed(stub, &name)? {
                chaincode_definitions.push(
                    lc::query_chaincode_definitions_result::ChaincodeDefinition {
                        name: def.name,
                        sequence: def.sequence,
                        version: def.version,
                        endorsement_plugin: def.endorsement_plugin,
                        validation_plugin: def.validation_plugin,
                        validation_parameter: def.validation_parameter,
                        collections: def.collections,
                        init_required: def.init_required,
                    },
                );
            }
        }
        Ok(lc::QueryChaincodeDefinitionsResult {
            chaincode_definitions,
        }
        .encode_to_vec())
    }

    fn query_approved(&self, stub: &mut ChaincodeStub<'_>) -> Result<Vec<u8>, Failure> {
        let args: lc::QueryApprovedChaincodeDefinitionArgs =
            decode_arg(stub, "QueryApprovedChaincodeDefinition")?;
        let sequences: Vec<i64> = if args.sequence > 0 {
            vec![args.sequence]
        } else {
            // Fabric's rule for "no sequence": the next sequence if approved, else the current.
            let current = Self::committed(stub, &args.name)?.map_or(0, |d| d.sequence);
            vec![current + 1, current]
        };
        for sequence in sequences.into_iter().filter(|s| *s > 0) {
            if let Some(bytes) = Self::get(stub, &approval_key(&args.name, sequence, &self.msp_id))?
            {
                let a = lc::ApproveChaincodeDefinitionForMyOrgArgs::decode(bytes.as_slice())
                    .map_err(|e| format!("the approval does not decode: {e}"))?;
                return Ok(lc::QueryApprovedChaincodeDefinitionResult {
                    sequence: a.sequence,
                    version: a.version,
                    endorsement_plugin: a.endorsement_plugin,
                    validation_plugin: a.validation_plugin,
                    validation_parameter: a.validation_parameter,
                    collections: a.collections,
                    init_required: a.init_required,
                    source: a.source,
                }
                .encode_to_vec());
            }
        }
        Err(format!(
            "could not fetch approved chaincode definition (name: {}, sequence: {}) of {}",
            args.name, args.sequence, self.msp_id
        ))
    }

    fn run(&self, stub: &mut ChaincodeStub<'_>) -> Result<Vec<u8>, Failure> {
        let function = stub
            .get_args()
            .first()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default();
        match function.as_str() {
            "ApproveChaincodeDefinitionForMyOrg" => self.approve(stub),
            "CommitChaincodeDefinition" => self.commit(stub),
            "CheckCommitReadiness" => {
                let args: lc::CheckCommitReadinessArgs = decode_arg(stub, "CheckCommitReadiness")?;
                let approvals = self.readiness(stub, &readiness_definition(args))?;
                Ok(lc::CheckCommitReadinessResult { approvals }.encode_to_vec())
            }
            "QueryChaincodeDefinition" => self.query_definition(stub),
            "QueryChaincodeDefinitions" => self.query_definitions(stub),
            "QueryApprovedChaincodeDefinition" => self.query_approved(stub),
            "InstallChaincode"
            | "QueryInstalledChaincode"
            | "QueryInstalledChaincodes"
            | "GetInstalledChaincodePackage" => Err(format!(
                "{function} is a peer-local function: send it with an empty channel id"
            )),
            other => Err(format!("unknown _lifecycle function {other:?}")),
        }
    }
}

impl Chaincode for LifecycleChaincode {
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> protos::Response {
        match self.run(stub) {
            Ok(payload) => success(payload),
            Err(message) => error(message),
        }
    }
}

#[cfg(test)]
mod tests;
