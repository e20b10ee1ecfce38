//! Declarative channel config changes — add or remove an application organization, set a
//! policy, change the orderer's batch parameters — applied to a copy of the current config and
//! turned into the `ConfigUpdate` that moves the channel there (as `configtxlator
//! compute_update` would). Pure: no files, no network; the commands fetch and write around it.

use gridledger_channels::config::duration::format_go_duration_ms;
use gridledger_channels::config::{
    ACLS_KEY, APPLICATION_GROUP, BATCH_SIZE_KEY, BATCH_TIMEOUT_KEY, CHANNEL_GROUP,
    CONSENSUS_TYPE_KEY, ENDPOINTS_KEY, ORDERER_GROUP,
};
use gridledger_channels::policy::{parse, parse_implicit_meta};
use gridledger_channels::update::{self, UpdateError};
use gridledger_proto::prost::Message;
use gridledger_proto::{common, etcdraft, orderer, protos};
use std::fmt;

/// Why a change cannot be applied to a channel's config.
#[derive(Debug)]
pub enum ChangeError {
    /// The config has no `/Channel/<section>` group.
    MissingSection(&'static str),
    /// `org add` of an organization already in the channel.
    OrgExists(String),
    /// `org remove` of an organization not in the channel.
    NoSuchOrg(String, String),
    /// A policy path that does not name a policy of an existing group.
    PolicyPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Policy text in neither the signature nor the implicit-meta syntax.
    PolicySyntax {
        /// The policy text.
        text: String,
        /// The signature-policy parser's error.
        signature: String,
    },
    /// An ACL change that cannot be made (empty names, an override that is not there).
    Acl(String),
    /// `batch set` with nothing to set, or a value the orderer would refuse.
    Batch(String),
    /// A consenter change that does not fit the current consenter set.
    Consenter(String),
    /// A config value that does not decode.
    Decode {
        /// Which value.
        what: &'static str,
        /// The decoder's error.
        source: gridledger_proto::prost::DecodeError,
    },
    /// The change leaves the config as it is, or the update cannot be computed.
    Update(UpdateError),
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::MissingSection(name) => {
                write!(f, "the channel config has no /{CHANNEL_GROUP}/{name} group")
            }
            ChangeError::OrgExists(msp_id) => write!(
                f,
                "organization {msp_id} is already a member of the channel's application"
            ),
            ChangeError::NoSuchOrg(msp_id, members) => write!(
                f,
                "organization {msp_id} is not a member of the channel's application \
                 (members: {members})"
            ),
            ChangeError::Acl(reason) => write!(f, "ACL change: {reason}"),
            ChangeError::PolicyPath { path, reason } => write!(f, "policy path {path:?}: {reason}"),
            ChangeError::PolicySyntax { text, signature } => write!(
                f,
                "policy {text:?} is neither a signature policy ({signature}) nor an \
                 implicit-meta policy (ANY|ALL|MAJORITY <SubPolicy>)"
            ),
            ChangeError::Batch(reason) => write!(f, "batch set: {reason}"),
            ChangeError::Consenter(reason) => write!(f, "consenters: {reason}"),
            ChangeError::Decode { what, source } => {
                write!(f, "the channel's {what} does not decode: {source}")
            }
            ChangeError::Update(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ChangeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChangeError::Decode { source, .. } => Some(source),
            ChangeError::Update(e) => e.source(),
            _ => None,
        }
    }
}

impl From<UpdateError> for ChangeError {
    fn from(e: UpdateError) -> ChangeError {
        ChangeError::Update(e)
    }
}

/// One declarative change.
#[derive(Debug, Clone)]
pub enum Change {
    /// Add an application organization: its group (MSP, anchor peers, policies), keyed by MSP id.
    OrgAdd {
        /// The organization's MSP id (its group's key).
        msp_id: String,
        /// Its group, as `OrganizationSpec::to_config_group` builds it.
        group: common::ConfigGroup,
    },
    /// Remove an application organization.
    OrgRemove {
        /// Its MSP id.
        msp_id: String,
    },
    /// Replace (or create) the policy at an absolute path such as
    /// `/Channel/Application/Writers`.
    PolicySet {
        /// The policy's path.
        path: String,
        /// The new policy.
        policy: common::Policy,
    },
    /// Map a resource (e.g. `qscc/GetChainInfo`) to a policy reference in the Application
    /// group's `ACLs` value, or (`policy: None`) remove its override so the peer's default
    /// applies again.
    AclSet {
        /// The resource.
        resource: String,
        /// The policy reference (`/Channel/Application/Admins`, or relative to
        /// `/Channel/Application`), or `None` to remove the override.
        policy: Option<String>,
    },
    /// Change some of the orderer's batch parameters; `None` keeps the current value.
    BatchSet {
        /// `BatchSize.max_message_count`.
        max_message_count: Option<u32>,
        /// `BatchTimeout`, milliseconds.
        batch_timeout_ms: Option<u64>,
        /// `BatchSize.preferred_max_bytes`.
        preferred_max_bytes: Option<u32>,
    },
    /// Add a Raft consenter, and its address to an orderer organization's endpoints.
    ConsenterAdd {
        /// The consenter (host, port, TLS certificates).
        consenter: etcdraft::Consenter,
        /// The orderer organization whose `Endpoints` gets `host:port` (default: the only one).
        orderer_org: Option<String>,
    },
    /// Remove the Raft consenter at `host:port`, and that address from the orderer
    /// organizations' endpoints.
    ConsenterRemove {
        /// Its host.
        host: String,
        /// Its port.
        port: u32,
    },
}

/// A policy from its text: `ANY|ALL|MAJORITY <SubPolicy>` is an implicit-meta policy, anything
/// else is parsed as a signature policy (`OR('A.member', …)`, `OutOf(2, …)`).
pub fn policy_from_text(text: &str) -> Result<common::Policy, ChangeError> {
    let trimmed = text.trim();
    let first = trimmed.split_whitespace().next().unwrap_or("");
    if matches!(first, "ANY" | "ALL" | "MAJORITY") {
        let meta = parse_implicit_meta(trimmed).map_err(|e| ChangeError::PolicySyntax {
            text: text.to_string(),
            signature: e.to_string(),
        })?;
        return Ok(common::Policy {
            r#type: common::policy::PolicyType::ImplicitMeta as i32,
            value: meta.encode_to_vec(),
        });
    }
    let envelope = parse(trimmed).map_err(|e| ChangeError::PolicySyntax {
        text: text.to_string(),
        signature: e.to_string(),
    })?;
    Ok(common::Policy {
        r#type: common::policy::PolicyType::Signature as i32,
        value: envelope.encode_to_vec(),
    })
}

fn section<'a>(
    config: &'a mut common::Config,
    name: &'static str,
) -> Result<&'a mut common::ConfigGroup, ChangeError> {
    config
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(name))
        .ok_or(ChangeError::MissingSection(name))
}

/// `config` with `change` made (versions untouched: [`prepare`] computes them).
pub fn apply_change(
    config: &common::Config,
    change: &Change,
) -> Result<common::Config, ChangeError> {
    let mut desired = config.clone();
    match change {
        Change::OrgAdd { msp_id, group } => {
            let application = section(&mut desired, APPLICATION_GROUP)?;
            if application.groups.contains_key(msp_id) {
                return Err(ChangeError::OrgExists(msp_id.clone()));
            }
            application.groups.insert(msp_id.clone(), group.clone());
        }
        Change::OrgRemove { msp_id } => {
            let application = section(&mut desired, APPLICATION_GROUP)?;
            if application.groups.remove(msp_id).is_none() {
                let members: Vec<&str> = application.groups.keys().map(String::as_str).collect();
                return Err(ChangeError::NoSuchOrg(msp_id.clone(), members.join(", ")));
            }
        }
        Change::PolicySet { path, policy } => set_policy(&mut desired, path, policy)?,
        Change::AclSet { resource, policy } => set_acl(&mut desired, resource, policy.as_deref())?,
        Change::BatchSet {
            max_message_count,
            batch_timeout_ms,
            preferred_max_bytes,
        } => {
            if max_message_count.is_none()
                && batch_timeout_ms.is_none()
                && preferred_max_bytes.is_none()
            {
                return Err(ChangeError::Batch(
                    "give at least one of --max-message-count, --batch-timeout-ms, \
                     --preferred-max-bytes"
                        .into(),
                ));
            }
            if *max_message_count == Some(0) {
                return Err(ChangeError::Batch("max_message_count must be > 0".into()));
            }
            if *batch_timeout_ms == Some(0) {
                return Err(ChangeError::Batch("batch_timeout_ms must be > 0".into()));
            }
            let orderer_group = section(&mut desired, ORDERER_GROUP)?;
            if max_message_count.is_some() || preferred_max_bytes.is_some() {
                let value =
                    orderer_group
                        .values
                        .get_mut(BATCH_SIZE_KEY)
                        .ok_or(ChangeError::Batch(
                            "the Orderer group has no BatchSize".into(),
                        ))?;
                let mut size =
                    orderer::BatchSize::decode(value.value.as_slice()).map_err(|source| {
                        ChangeError::Decode {
                            what: "BatchSize",
                            source,
                        }
                    })?;
                if let Some(n) = max_message_count {
                    size.max_message_count = *n;
                }
                if let Some(b) = preferred_max_bytes {
                    if *b == 0 || *b > size.absolute_max_bytes {
                        return Err(ChangeError::Batch(format!(
                            "preferred_max_bytes must be in 1..={} (absolute_max_bytes)",
                            size.absolute_max_bytes
                        )));
                    }
                    size.preferred_max_bytes = *b;
                }
                value.value = size.encode_to_vec();
            }
            if let Some(ms) = batch_timeout_ms {
                let value =
                    orderer_group
                        .values
                        .get_mut(BATCH_TIMEOUT_KEY)
                        .ok_or(ChangeError::Batch(
                            "the Orderer group has no BatchTimeout".into(),
                        ))?;
                value.value = orderer::BatchTimeout {
                    timeout: format_go_duration_ms(*ms),
                }
                .encode_to_vec();
            }
        }
        Change::ConsenterAdd {
            consenter,
            orderer_org,
        } => {
            let orderer_group = section(&mut desired, ORDERER_GROUP)?;
            edit_consenters(orderer_group, |consenters| {
                if consenters
                    .iter()
                    .any(|c| c.host == consenter.host && c.port == consenter.port)
                {
                    return Err(ChangeError::Consenter(format!(
                        "{}:{} is already a consenter",
                        consenter.host, consenter.port
                    )));
                }
                consenters.push(consenter.clone());
                Ok(())
            })?;
            let org = match orderer_org {
                Some(o) => o.clone(),
                None if orderer_group.groups.len() == 1 => orderer_group
                    .groups
                    .keys()
                    .next()
                    .cloned()
                    .expect("one group"),
                None => {
                    return Err(ChangeError::Consenter(format!(
                        "name the orderer organization whose endpoints get the address (one of {})",
                        orderer_group
                            .groups
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            };
            let group = orderer_group.groups.get_mut(&org).ok_or_else(|| {
                ChangeError::Consenter(format!("there is no orderer organization {org}"))
            })?;
            let address = format!("{}:{}", consenter.host, consenter.port);
            edit_endpoints(group, |addresses| {
                if !addresses.contains(&address) {
                    addresses.push(address.clone());
                }
            })?;
        }
        Change::ConsenterRemove { host, port } => {
            let orderer_group = section(&mut desired, ORDERER_GROUP)?;
            edit_consenters(orderer_group, |consenters| {
                let before = consenters.len();
                consenters.retain(|c| !(c.host == *host && c.port == *port));
                if consenters.len() == before {
                    return Err(ChangeError::Consenter(format!(
                        "{host}:{port} is not a consenter"
                    )));
                }
                if consenters.is_empty() {
                    return Err(ChangeError::Consenter(
                        "the last consenter cannot be removed".into(),
                    ));
                }
                Ok(())
            })?;
            let address = format!("{host}:{port}");
            for group in orderer_group.groups.values_mut() {
                if group.values.contains_key(ENDPOINTS_KEY) {
                    edit_endpoints(group, |addresses| addresses.retain(|a| *a != address))?;
                }
            }
        }
    }
    Ok(desired)
}

/// Edits the etcdraft consenters inside the Orderer group's ConsensusType.
fn edit_consenters(
    orderer_group: &mut common::ConfigGroup,
    edit: impl FnOnce(&mut Vec<etcdraft::Consenter>) -> Result<(), ChangeError>,
) -> Result<(), ChangeError> {
    let value = orderer_group
        .values
        .get_mut(CONSENSUS_TYPE_KEY)
        .ok_or(ChangeError::Consenter(
            "the Orderer group has no ConsensusType".into(),
        ))?;
    let mut consensus =
        orderer::ConsensusType::decode(value.value.as_slice()).map_err(|source| {
            ChangeError::Decode {
                what: "ConsensusType",
                source,
            }
        })?;
    let mut metadata =
        etcdraft::ConfigMetadata::decode(consensus.metadata.as_slice()).map_err(|source| {
            ChangeError::Decode {
                what: "etcdraft ConfigMetadata",
                source,
            }
        })?;
    edit(&mut metadata.consenters)?;
    consensus.metadata = metadata.encode_to_vec();
    value.value = consensus.encode_to_vec();
    Ok(())
}

/// Edits an orderer organization's `Endpoints` (created when missing).
fn edit_endpoints(
    group: &mut common::ConfigGroup,
    edit: impl FnOnce(&mut Vec<String>),
) -> Result<(), ChangeError> {
    let value = group
        .values
        .entry(ENDPOINTS_KEY.to_string())
        .or_insert_with(|| common::ConfigValue {
            version: 0,
            value: Vec::new(),
            mod_policy: gridledger_channels::config::ADMINS_POLICY.to_string(),
        });
    let mut addresses =
        common::OrdererAddresses::decode(value.value.as_slice()).map_err(|source| {
            ChangeError::Decode {
                what: "orderer Endpoints",
                source,
            }
        })?;
    edit(&mut addresses.addresses);
    value.value = addresses.encode_to_vec();
    Ok(())
}

/// Sets (or, with `None`, removes) the `ACLs` entry of `resource` in the Application group; the
/// value is created with mod_policy `Admins` when the channel has none.
fn set_acl(
    config: &mut common::Config,
    resource: &str,
    policy: Option<&str>,
) -> Result<(), ChangeError> {
    if resource.trim().is_empty() {
        return Err(ChangeError::Acl("the resource name is empty".into()));
    }
    if policy.is_some_and(|p| p.trim().is_empty()) {
        return Err(ChangeError::Acl(format!(
            "the policy reference of {resource} is empty"
        )));
    }
    let application = section(config, APPLICATION_GROUP)?;
    let mut acls = match application.values.get(ACLS_KEY) {
        Some(value) => {
            protos::AcLs::decode(value.value.as_slice()).map_err(|source| ChangeError::Decode {
                what: "ACLs",
                source,
            })?
        }
        None => protos::AcLs::default(),
    };
    match policy {
        Some(policy) => {
            acls.acls.insert(
                resource.to_owned(),
                protos::ApiResource {
                    policy_ref: policy.to_owned(),
                },
            );
        }
        None => {
            if acls.acls.remove(resource).is_none() {
                return Err(ChangeError::Acl(format!(
                    "the channel config has no ACL override for {resource}"
                )));
            }
        }
    }
    let bytes = acls.encode_to_vec();
    match application.values.get_mut(ACLS_KEY) {
        Some(value) => value.value = bytes,
        None => {
            application.values.insert(
                ACLS_KEY.to_owned(),
                common::ConfigValue {
                    version: 0,
                    value: bytes,
                    mod_policy: gridledger_channels::config::ADMINS_POLICY.to_string(),
                },
            );
        }
    }
    Ok(())
}

/// Sets the policy at absolute `path` (`/Channel/<group>/…/<Policy>`); a new policy gets
/// mod_policy `Admins`.
fn set_policy(
    config: &mut common::Config,
    path: &str,
    policy: &common::Policy,
) -> Result<(), ChangeError> {
    let bad = |reason: String| ChangeError::PolicyPath {
        path: path.to_string(),
        reason,
    };
    let Some(rest) = path.strip_prefix(&format!("/{CHANNEL_GROUP}/")) else {
        return Err(bad(format!("must start with /{CHANNEL_GROUP}/")));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (name, groups) = parts
        .split_last()
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| bad("names no policy".into()))?;
    let mut group = config
        .channel_group
        .as_mut()
        .ok_or_else(|| bad("the config has no channel group".into()))?;
    let mut walked = format!("/{CHANNEL_GROUP}");
    for part in groups {
        walked.push('/');
        walked.push_str(part);
        group = group
            .groups
            .get_mut(*part)
            .ok_or_else(|| bad(format!("there is no group {walked}")))?;
    }
    match group.policies.get_mut(*name) {
        Some(existing) => existing.policy = Some(policy.clone()),
        None => {
            group.policies.insert(
                (*name).to_string(),
                common::ConfigPolicy {
                    version: 0,
                    policy: Some(policy.clone()),
                    mod_policy: gridledger_channels::config::ADMINS_POLICY.to_string(),
                },
            );
        }
    }
    Ok(())
}

/// The unsigned `ConfigUpdateEnvelope` that makes `change` to channel `channel_id`'s `current`
/// config.
pub fn prepare(
    channel_id: &str,
    current: &common::Config,
    change: &Change,
) -> Result<common::ConfigUpdateEnvelope, ChangeError> {
    let desired = apply_change(current, change)?;
    let config_update = update::compute_update(channel_id, current, &desired)?;
    Ok(update::new_envelope(&config_update))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn group(version: u64) -> common::ConfigGroup {
        common::ConfigGroup {
            version,
            mod_policy: "Admins".into(),
            ..Default::default()
        }
    }

    fn policy_entry(text: &str) -> common::ConfigPolicy {
        common::ConfigPolicy {
            version: 0,
            policy: Some(policy_from_text(text).unwrap()),
            mod_policy: "Admins".into(),
        }
    }

    /// /Channel{Application{A, B; Writers}, Orderer{BatchSize, BatchTimeout}} at version 0.
    fn sample() -> common::Config {
        let mut application = group(0);
        application.version = 2;
        for org in ["AMSP", "BMSP"] {
            application.groups.insert(org.into(), group(0));
        }
        application
            .policies
            .insert("Writers".into(), policy_entry("ANY Writers"));
        let mut orderer_group = group(0);
        for (key, value) in [
            (
                BATCH_SIZE_KEY,
                orderer::BatchSize {
                    max_message_count: 500,
                    absolute_max_bytes: 10 << 20,
                    preferred_max_bytes: 2 << 20,
                }
                .encode_to_vec(),
            ),
            (
                BATCH_TIMEOUT_KEY,
                orderer::BatchTimeout {
                    timeout: "2s".into(),
                }
                .encode_to_vec(),
            ),
        ] {
            orderer_group.values.insert(
                key.into(),
                common::ConfigValue {
                    version: 0,
                    value,
                    mod_policy: "Admins".into(),
                },
            );
        }
        let consenter = |port: u32| etcdraft::Consenter {
            host: "127.0.0.1".into(),
            port,
            client_tls_cert: b"cert".to_vec(),
            server_tls_cert: b"cert".to_vec(),
        };
        let consensus = orderer::ConsensusType {
            r#type: "etcdraft".into(),
            metadata: etcdraft::ConfigMetadata {
                consenters: vec![consenter(7050), consenter(7051)],
                options: None,
            }
            .encode_to_vec(),
            state: 0,
        };
        orderer_group.values.insert(
            CONSENSUS_TYPE_KEY.into(),
            common::ConfigValue {
                version: 0,
                value: consensus.encode_to_vec(),
                mod_policy: "Admins".into(),
            },
        );
        let mut orderer_org = group(0);
        orderer_org.values.insert(
            ENDPOINTS_KEY.into(),
            common::ConfigValue {
                version: 0,
                value: common::OrdererAddresses {
                    addresses: vec!["127.0.0.1:7050".into(), "127.0.0.1:7051".into()],
                }
                .encode_to_vec(),
                mod_policy: "Admins".into(),
            },
        );
        orderer_group
            .groups
            .insert("OrdererMSP".into(), orderer_org);
        let mut root = group(0);
        root.groups.insert(APPLICATION_GROUP.into(), application);
        root.groups.insert(ORDERER_GROUP.into(), orderer_group);
        common::Config {
            sequence: 3,
            channel_group: Some(root),
        }
    }

    fn sets(envelope: &common::ConfigUpdateEnvelope) -> (common::ConfigGroup, common::ConfigGroup) {
        let update = update::decode_update(envelope).unwrap();
        assert_eq!(update.channel_id, "ch");
        assert!(envelope.signatures.is_empty());
        (update.read_set.unwrap(), update.write_set.unwrap())
    }

    #[test]
    fn org_add_bumps_the_application_group_and_writes_the_new_org_at_zero() {
        let mut new_org = group(0);
        new_org
            .policies
            .insert("Admins".into(), policy_entry("OR('CMSP.admin')"));
        let change = Change::OrgAdd {
            msp_id: "CMSP".into(),
            group: new_org.clone(),
        };
        let (read, write) = sets(&prepare("ch", &sample(), &change).unwrap());
        let read_app = &read.groups[APPLICATION_GROUP];
        let write_app = &write.groups[APPLICATION_GROUP];
        assert_eq!(read_app.version, 2);
        assert_eq!(write_app.version, 3);
        assert_eq!(write_app.groups["CMSP"], new_org);
        // The kept members are listed at their versions, so they stay.
        assert_eq!(write_app.groups["AMSP"].version, 0);
        assert!(write_app.groups.contains_key("BMSP"));
        assert!(!write.groups.contains_key(ORDERER_GROUP));
        assert!(matches!(
            apply_change(
                &apply_change(&sample(), &change).unwrap(),
                &change
            ),
            Err(ChangeError::OrgExists(ref m)) if m == "CMSP"
        ));
    }

    #[test]
    fn acl_set_writes_the_acls_value_and_unset_removes_the_override() {
        let acls = |config: &common::Config| {
            let app = &config.channel_group.as_ref().unwrap().groups[APPLICATION_GROUP];
            protos::AcLs::decode(app.values[ACLS_KEY].value.as_slice()).unwrap()
        };
        let set = Change::AclSet {
            resource: "qscc/GetChainInfo".into(),
            policy: Some("/Channel/Application/Admins".into()),
        };
        let with = apply_change(&sample(), &set).unwrap();
        assert_eq!(
            acls(&with).acls["qscc/GetChainInfo"].policy_ref,
            "/Channel/Application/Admins"
        );
        let (_, write) = sets(&prepare("ch", &sample(), &set).unwrap());
        let value = &write.groups[APPLICATION_GROUP].values[ACLS_KEY];
        assert_eq!(value.mod_policy, "Admins");
        let unset = Change::AclSet {
            resource: "qscc/GetChainInfo".into(),
            policy: None,
        };
        let without = apply_change(&with, &unset).unwrap();
        assert!(acls(&without).acls.is_empty());
        assert!(matches!(
            apply_change(&without, &unset),
            Err(ChangeError::Acl(ref m)) if m.contains("qscc/GetChainInfo")
        ));
        assert!(matches!(
            apply_change(
                &sample(),
                &Change::AclSet {
                    resource: " ".into(),
                    policy: Some("Admins".into())
                }
            ),
            Err(ChangeError::Acl(_))
        ));
    }

    #[test]
    fn org_remove_rewrites_the_application_group_without_it() {
        let change = Change::OrgRemove {
            msp_id: "BMSP".into(),
        };
        let (_, write) = sets(&prepare("ch", &sample(), &change).unwrap());
        let write_app = &write.groups[APPLICATION_GROUP];
        assert_eq!(write_app.version, 3);
        assert!(write_app.groups.contains_key("AMSP"));
        assert!(!write_app.groups.contains_key("BMSP"));
        let missing = Change::OrgRemove {
            msp_id: "ZMSP".into(),
        };
        let err = apply_change(&sample(), &missing).unwrap_err().to_string();
        assert!(err.contains("ZMSP") && err.contains("AMSP, BMSP"), "{err}");
    }

    #[test]
    fn policy_set_writes_the_policy_at_version_plus_one() {
        let change = Change::PolicySet {
            path: "/Channel/Application/Writers".into(),
            policy: policy_from_text("OR('AMSP.member','BMSP.member')").unwrap(),
        };
        let (read, write) = sets(&prepare("ch", &sample(), &change).unwrap());
        // Membership unchanged: the group is read and written at its version.
        assert_eq!(read.groups[APPLICATION_GROUP].version, 2);
        assert_eq!(write.groups[APPLICATION_GROUP].version, 2);
        let written = &write.groups[APPLICATION_GROUP].policies["Writers"];
        assert_eq!(written.version, 1);
        let policy = written.policy.as_ref().unwrap();
        assert_eq!(policy.r#type, common::policy::PolicyType::Signature as i32);
        assert_eq!(
            crate::channel::render_policy(policy),
            "OR('AMSP.member', 'BMSP.member')"
        );

        let meta = policy_from_text("MAJORITY Writers").unwrap();
        assert_eq!(meta.r#type, common::policy::PolicyType::ImplicitMeta as i32);
        for (path, wanted) in [
            ("/Channel/Nope/Writers", "no group /Channel/Nope"),
            ("Application/Writers", "must start with /Channel/"),
            ("/Channel/Application/", "names no policy"),
        ] {
            let err = apply_change(
                &sample(),
                &Change::PolicySet {
                    path: path.into(),
                    policy: meta.clone(),
                },
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(wanted), "{path}: {err}");
        }
        assert!(policy_from_text("OR('AMSP.member'").is_err());
    }

    #[test]
    fn batch_set_writes_only_the_changed_values() {
        let change = Change::BatchSet {
            max_message_count: Some(10),
            batch_timeout_ms: Some(500),
            preferred_max_bytes: None,
        };
        let (read, write) = sets(&prepare("ch", &sample(), &change).unwrap());
        assert_eq!(read.groups[ORDERER_GROUP].version, 0);
        let values = &write.groups[ORDERER_GROUP].values;
        let size = orderer::BatchSize::decode(values[BATCH_SIZE_KEY].value.as_slice()).unwrap();
        assert_eq!(values[BATCH_SIZE_KEY].version, 1);
        assert_eq!(size.max_message_count, 10);
        assert_eq!(size.preferred_max_bytes, 2 << 20);
        let timeout =
            orderer::BatchTimeout::decode(values[BATCH_TIMEOUT_KEY].value.as_slice()).unwrap();
        assert_eq!(timeout.timeout, "500ms");
        assert!(!write.groups.contains_key(APPLICATION_GROUP));

        // Only the timeout: BatchSize is not written.
        let timeout_only = Change::BatchSet {
            max_message_count: None,
            batch_timeout_ms: Some(1_000),
            preferred_max_bytes: None,
        };
        let (_, write) = sets(&prepare("ch", &sample(), &timeout_only).unwrap());
        assert!(
            !write.groups[ORDERER_GROUP]
                .values
                .contains_key(BATCH_SIZE_KEY)
        );

        let nothing = Change::BatchSet {
            max_message_count: None,
            batch_timeout_ms: None,
            preferred_max_bytes: None,
        };
        assert!(matches!(
            apply_change(&sample(), &nothing),
            Err(ChangeError::Batch(_))
        ));
        let same = Change::BatchSet {
            max_message_count: Some(500),
            batch_timeout_ms: None,
            preferred_max_bytes: None,
        };
        assert!(matches!(
            prepare("ch", &sample(), &same),
            Err(ChangeError::Update(UpdateError::NoDifferences))
        ));
    }

    fn consenter_ports(write: &common::ConfigGroup) -> Vec<u32> {
        let value = &write.groups[ORDERER_GROUP].values[CONSENSUS_TYPE_KEY];
        assert_eq!(value.version, 1);
        let consensus = orderer::ConsensusType::decode(value.value.as_slice()).unwrap();
        etcdraft::ConfigMetadata::decode(consensus.metadata.as_slice())
            .unwrap()
            .consenters
            .iter()
            .map(|c| c.port)
            .collect()
    }

    fn endpoints(write: &common::ConfigGroup) -> Vec<String> {
        let value = &write.groups[ORDERER_GROUP].groups["OrdererMSP"].values[ENDPOINTS_KEY];
        assert_eq!(value.version, 1);
        common::OrdererAddresses::decode(value.value.as_slice())
            .unwrap()
            .addresses
    }

    #[test]
    fn consenter_add_and_remove_rewrite_consensus_type_and_endpoints() {
        let add = Change::ConsenterAdd {
            consenter: etcdraft::Consenter {
                host: "127.0.0.1".into(),
                port: 7052,
                client_tls_cert: b"new".to_vec(),
                server_tls_cert: b"new".to_vec(),
            },
            orderer_org: None,
        };
        let (_, write) = sets(&prepare("ch", &sample(), &add).unwrap());
        assert_eq!(consenter_ports(&write), [7050, 7051, 7052]);
        assert!(endpoints(&write).contains(&"127.0.0.1:7052".to_string()));
        assert!(!write.groups.contains_key(APPLICATION_GROUP));
        let twice = apply_change(&apply_change(&sample(), &add).unwrap(), &add);
        assert!(matches!(twice, Err(ChangeError::Consenter(_))));

        let remove = Change::ConsenterRemove {
            host: "127.0.0.1".into(),
            port: 7051,
        };
        let (_, write) = sets(&prepare("ch", &sample(), &remove).unwrap());
        assert_eq!(consenter_ports(&write), [7050]);
        assert_eq!(endpoints(&write), ["127.0.0.1:7050"]);
        let unknown = Change::ConsenterRemove {
            host: "127.0.0.1".into(),
            port: 9999,
        };
        let err = apply_change(&sample(), &unknown).unwrap_err().to_string();
        assert!(err.contains("127.0.0.1:9999 is not a consenter"), "{err}");
    }
}
