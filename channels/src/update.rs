//! Config updates: computing, signing, authorizing and applying changes to a channel's config,
//! with the semantics of Fabric's `configtx` (and `configtxlator compute_update`).
//!
//! A `ConfigUpdate` names a **read set** (elements at the versions the update was computed
//! against) and a **write set** (the elements it writes). The **delta** is every write-set
//! element whose version differs from its read-set version. The rules:
//!
//! - every read-set element must exist at exactly the version the read set names (otherwise the
//!   update is stale: it was computed against an older config);
//! - a changed existing element must be written at its current version + 1, a new one at 0;
//! - each changed existing element's current `mod_policy` must be satisfied by the signatures.
//!   A relative `mod_policy` resolves in the group that contains a value or policy, and in the
//!   group itself for a group; an absolute one ("/Channel/…") from the root. New elements need
//!   no policy of their own: adding them bumps their parent group, whose policy applies;
//! - a group written at a new version has exactly the children its write-set entry lists, so
//!   omitting a child removes it; a group left at its version keeps its children;
//! - the resulting config must be a valid channel config that keeps the Application and Orderer
//!   groups, and every organization group that stays keeps its MSP id (Fabric's bundle
//!   `ValidateNew`): otherwise an organization's admins alone could move its group to another
//!   MSP id.
//!
//! Signatures are `ConfigSignature{signature_header, signature}` over
//! `signature_header ‖ config_update` (Fabric's `ConfigUpdateEnvelopeAsSignedData`).
//!
//! Unlike Fabric, an element that is new but whose parent group was not version-bumped is an
//! error here (Fabric accepts the update and silently drops the element).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use gridledger_identity::{MspManager, SigningIdentity};
use gridledger_proto::blockutil::compute_tx_id;
use gridledger_proto::{common, msp};
use prost::Message;
use thiserror::Error;

use crate::config::{
    APPLICATION_GROUP, CHANNEL_GROUP, ChannelConfig, ConfigError, ORDERER_GROUP,
    validate_config_key,
};
use crate::policy::{Evaluation, SignedData, verify_signers};

/// Length of a Fabric signature-header nonce.
pub const NONCE_LEN: usize = 24;

/// Why an update could not be computed, authorized or applied.
#[derive(Debug, Error)]
pub enum UpdateError {
    /// The desired config equals the current one.
    #[error("no differences detected between the current and the desired config")]
    NoDifferences,
    /// A config has no root group.
    #[error("the {0} config has no channel group")]
    MissingChannelGroup(&'static str),
    /// Some bytes do not decode as the message they should hold.
    #[error("cannot decode the {what}: {source}")]
    Decode {
        /// Which message.
        what: &'static str,
        /// The decoder's error.
        source: prost::DecodeError,
    },
    /// The update is for another channel.
    #[error("the update is for channel {update:?}, but this is channel {channel:?}")]
    WrongChannel {
        /// Channel id inside the `ConfigUpdate`.
        update: String,
        /// The channel being updated.
        channel: String,
    },
    /// A key in the read or write set is not a valid element name.
    #[error("{set}: invalid element name under {parent}: {reason}")]
    InvalidKey {
        /// "read set" or "write set".
        set: &'static str,
        /// Path of the group holding the key.
        parent: String,
        /// What is wrong with the name.
        reason: String,
    },
    /// The read set names an element the config does not have.
    #[error("the read set names {0}, which does not exist in the current config")]
    ReadSetMissing(ElementPath),
    /// The update was computed against an older version of an element.
    #[error(
        "stale update: it was computed against version {read} of {element}, which is now at \
         version {current}; recompute it against the current config"
    )]
    StaleReadSet {
        /// The element.
        element: ElementPath,
        /// Version named by the read set.
        read: u64,
        /// Version in the current config.
        current: u64,
    },
    /// Every write-set element is at its read-set version.
    #[error("the update changes nothing: every written element is at its read-set version")]
    EmptyDelta,
    /// A written element's `mod_policy` is empty or not a valid policy path.
    #[error("{element} has an invalid mod_policy {mod_policy:?}: {reason}")]
    InvalidModPolicy {
        /// The element.
        element: ElementPath,
        /// The `mod_policy` written.
        mod_policy: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A new element is written at a version other than 0.
    #[error("{element} does not exist yet, so it must be written at version 0, not {version}")]
    NewElementVersion {
        /// The element.
        element: ElementPath,
        /// The version written.
        version: u64,
    },
    /// An existing element is written at a version other than its current one + 1.
    #[error(
        "{element} is at version {current}; an update must write version {}, not {proposed}",
        current + 1
    )]
    VersionSkip {
        /// The element.
        element: ElementPath,
        /// The version written.
        proposed: u64,
        /// The current version.
        current: u64,
    },
    /// An existing element has no `mod_policy`, so nobody may change it.
    #[error("{0} has no mod_policy, so it cannot be modified")]
    NoModPolicy(ElementPath),
    /// A `ConfigSignature`'s header does not decode.
    #[error("signature #{index}: cannot decode its signature header: {source}")]
    MalformedSignature {
        /// Position in the envelope's signature list.
        index: usize,
        /// The decoder's error.
        source: prost::DecodeError,
    },
    /// A `mod_policy` names no policy, or the policy is malformed.
    #[error("{element}: cannot evaluate its mod_policy {policy}: {source}")]
    Policy {
        /// The element.
        element: ElementPath,
        /// The resolved policy path.
        policy: String,
        /// The policy engine's error.
        source: Box<crate::policy::PolicyError>,
    },
    /// The signatures do not satisfy the `mod_policy` of a changed element.
    #[error(
        "{element} may only be changed with {policy}, which the signatures do not satisfy:\n{explanation}"
    )]
    Unauthorized {
        /// The first element (in path order) whose policy is not satisfied.
        element: ElementPath,
        /// Its resolved policy path.
        policy: String,
        /// Why the policy is not satisfied (who signed, who is missing).
        explanation: String,
    },
    /// A new element hangs under a group that the update does not version-bump.
    #[error(
        "{element} is new, but its group {group} is not written at a new version, so the update \
         would not include it"
    )]
    Orphan {
        /// The new element.
        element: ElementPath,
        /// Its parent group path.
        group: String,
    },
    /// The write set names a child that neither exists nor is written.
    #[error("the write set lists {0} without writing it, and it does not exist")]
    Dangling(ElementPath),
    /// The updated config is not a valid channel configuration.
    #[error("the updated config is not valid: {0}")]
    InvalidResult(#[source] ConfigError),
    /// The update removes the Application or Orderer group (Fabric's `ValidateNew`: "current
    /// config has orderer section, but new config does not").
    #[error("the update removes {group}, which a channel config must keep")]
    SectionRemoved {
        /// Path of the removed group.
        group: String,
    },
    /// An organization group that stays in the config would carry another MSP id (Fabric's
    /// `ValidateNew`: an org "attempted to change MSP ID"). An organization's MSP id is what
    /// its members' signatures and every policy naming it refer to; it can only be replaced by
    /// removing the organization and adding a new one.
    #[error("the update changes the MSP id of organization {group} from {from:?} to {to:?}")]
    MspIdChanged {
        /// Path of the organization group.
        group: String,
        /// MSP id in the current config.
        from: String,
        /// MSP id the update would give it.
        to: String,
    },
}

/// What kind of config element a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElementKind {
    /// A `ConfigGroup`.
    Group,
    /// A `ConfigValue`.
    Value,
    /// A `ConfigPolicy`.
    Policy,
}

impl fmt::Display for ElementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElementKind::Group => "group",
            ElementKind::Value => "value",
            ElementKind::Policy => "policy",
        })
    }
}

/// One element of a config tree: its absolute path (e.g. `/Channel/Application/DSOMSP/MSP`)
/// and kind. Orders by path, so reports read top-down.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ElementPath {
    /// Absolute path, from `/Channel`.
    pub path: String,
    /// Group, value or policy.
    pub kind: ElementKind,
}

impl fmt::Display for ElementPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.path)
    }
}

impl ElementPath {
    fn new(kind: ElementKind, path: String) -> ElementPath {
        ElementPath { path, kind }
    }

    /// Path of the group containing this element (the group itself for the root).
    fn parent(&self) -> &str {
        self.path
            .rsplit_once('/')
            .map(|(p, _)| p)
            .filter(|p| !p.is_empty())
            .unwrap_or(&self.path)
    }
}

/// How an element changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The element does not exist yet.
    Added,
    /// The element exists and is rewritten at a new version.
    Modified {
        /// Current version.
        from: u64,
        /// Version written.
        to: u64,
    },
}

/// One changed element and what authorizes it.
#[derive(Debug, Clone)]
pub struct ElementChange {
    /// The element.
    pub element: ElementPath,
    /// Added or modified.
    pub change: Change,
    /// For a modified element, the absolute path of its `mod_policy` and the evaluation of the
    /// signatures against it. `None` for an added element (its parent group's change covers it).
    pub authorization: Option<(String, Evaluation)>,
}

impl ElementChange {
    /// Whether this change is authorized by the signatures.
    pub fn is_satisfied(&self) -> bool {
        self.authorization
            .as_ref()
            .is_none_or(|(_, evaluation)| evaluation.satisfied)
    }
}

/// The outcome of checking a signed update against the current config: every change with its
/// policy verdict, and the config the update would produce.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// The channel.
    pub channel_id: String,
    /// Every changed element, in path order.
    pub changes: Vec<ElementChange>,
    /// The config after the update (sequence + 1); valid as a [`ChannelConfig`].
    pub next_config: common::Config,
}

impl Authorization {
    /// Whether every change is authorized.
    pub fn is_authorized(&self) -> bool {
        self.changes.iter().all(ElementChange::is_satisfied)
    }

    /// The first change (in path order) whose policy is not satisfied.
    pub fn first_unsatisfied(&self) -> Option<&ElementChange> {
        self.changes.iter().find(|c| !c.is_satisfied())
    }
}

/// Who signed an update envelope, as far as can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The MSP id the signer claims (empty when the creator does not decode).
    pub msp_id: String,
    /// The certificate subject, when the identity validated against the given MSPs.
    pub subject: Option<String>,
    /// Whether the identity is an admin of its MSP, when it validated.
    pub is_admin: Option<bool>,
    /// Why the identity or its signature does not check out; `None` when both do (or when no
    /// MSPs were given to check them with).
    pub problem: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Flattening a tree into paths.

/// An element of a flattened tree.
struct Flat<'a> {
    version: u64,
    mod_policy: &'a str,
}

/// Flattens a group tree rooted at `/Channel` into path → (version, mod_policy).
fn flatten<'a>(
    set: &'static str,
    root: &'a common::ConfigGroup,
) -> Result<BTreeMap<ElementPath, Flat<'a>>, UpdateError> {
    let mut out = BTreeMap::new();
    flatten_into(set, root, format!("/{CHANNEL_GROUP}"), &mut out)?;
    Ok(out)
}

fn flatten_into<'a>(
    set: &'static str,
    group: &'a common::ConfigGroup,
    path: String,
    out: &mut BTreeMap<ElementPath, Flat<'a>>,
) -> Result<(), UpdateError> {
    let check = |key: &str| {
        validate_config_key(key).map_err(|reason| UpdateError::InvalidKey {
            set,
            parent: path.clone(),
            reason,
        })
    };
    for (key, value) in &group.values {
        check(key)?;
        out.insert(
            ElementPath::new(ElementKind::Value, format!("{path}/{key}")),
            Flat {
                version: value.version,
                mod_policy: &value.mod_policy,
            },
        );
    }
    for (key, policy) in &group.policies {
        check(key)?;
        out.insert(
            ElementPath::new(ElementKind::Policy, format!("{path}/{key}")),
            Flat {
                version: policy.version,
                mod_policy: &policy.mod_policy,
            },
        );
    }
    for (key, child) in &group.groups {
        check(key)?;
        flatten_into(set, child, format!("{path}/{key}"), out)?;
    }
    out.insert(
        ElementPath::new(ElementKind::Group, path),
        Flat {
            version: group.version,
            mod_policy: &group.mod_policy,
        },
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Delta: what an update changes, checked against the current config.

/// A change in the delta, before signatures are looked at.
struct DeltaEntry {
    change: Change,
    /// Absolute policy path guarding the existing element (None for additions).
    policy: Option<String>,
}

/// Checks `mod_policy` syntax as Fabric's `validateModPolicy`: non-empty, and each path element
/// (after an optional leading '/') a valid config key.
fn validate_mod_policy(element: &ElementPath, mod_policy: &str) -> Result<(), UpdateError> {
    let invalid = |reason: String| UpdateError::InvalidModPolicy {
        element: element.clone(),
        mod_policy: mod_policy.to_string(),
        reason,
    };
    if mod_policy.is_empty() {
        return Err(invalid("mod_policy is not set".to_string()));
    }
    let trimmed = mod_policy.strip_prefix('/').unwrap_or(mod_policy);
    for (i, part) in trimmed.split('/').enumerate() {
        validate_config_key(part)
            .map_err(|reason| invalid(format!("path element {i}: {reason}")))?;
    }
    Ok(())
}

/// Resolves an element's `mod_policy` to an absolute policy path (Fabric's `policyForItem`).
fn resolve_mod_policy(element: &ElementPath, mod_policy: &str) -> String {
    if mod_policy.starts_with('/') {
        return mod_policy.to_string();
    }
    let scope = match element.kind {
        ElementKind::Group => element.path.as_str(),
        ElementKind::Value | ElementKind::Policy => element.parent(),
    };
    format!("{scope}/{mod_policy}")
}

/// Verifies the read set and computes the delta of `update` against `current`.
fn compute_delta(
    current: &common::Config,
    update: &common::ConfigUpdate,
) -> Result<BTreeMap<ElementPath, DeltaEntry>, UpdateError> {
    let current_root = current
        .channel_group
        .as_ref()
        .ok_or(UpdateError::MissingChannelGroup("current"))?;
    let existing = flatten("current config", current_root)?;
    let read_set = match &update.read_set {
        Some(group) => flatten("read set", group)?,
        None => BTreeMap::new(),
    };
    let write_set = match &update.write_set {
        Some(group) => flatten("write set", group)?,
        None => BTreeMap::new(),
    };

    for (element, read) in &read_set {
        let now = existing
            .get(element)
            .ok_or_else(|| UpdateError::ReadSetMissing(element.clone()))?;
        if now.version != read.version {
            return Err(UpdateError::StaleReadSet {
                element: element.clone(),
                read: read.version,
                current: now.version,
            });
        }
    }

    let mut delta = BTreeMap::new();
    for (element, written) in &write_set {
        if read_set
            .get(element)
            .is_some_and(|read| read.version == written.version)
        {
            continue;
        }
        validate_mod_policy(element, written.mod_policy)?;
        let entry = match existing.get(element) {
            None => {
                if written.version != 0 {
                    return Err(UpdateError::NewElementVersion {
                        element: element.clone(),
                        version: written.version,
                    });
                }
                DeltaEntry {
                    change: Change::Added,
                    policy: None,
                }
            }
            Some(now) => {
                if Some(written.version) != now.version.checked_add(1) {
                    return Err(UpdateError::VersionSkip {
                        element: element.clone(),
                        proposed: written.version,
                        current: now.version,
                    });
                }
                if now.mod_policy.is_empty() {
                    return Err(UpdateError::NoModPolicy(element.clone()));
                }
                DeltaEntry {
                    change: Change::Modified {
                        from: now.version,
                        to: written.version,
                    },
                    policy: Some(resolve_mod_policy(element, now.mod_policy)),
                }
            }
        };
        delta.insert(element.clone(), entry);
    }
    if delta.is_empty() {
        return Err(UpdateError::EmptyDelta);
    }
    Ok(delta)
}

// ---------------------------------------------------------------------------------------------
// Applying a delta.

/// Rebuilds the group at `path` from the current group and the write set, following the delta.
fn rebuild(
    path: &str,
    existing: Option<&common::ConfigGroup>,
    written: Option<&common::ConfigGroup>,
    delta: &BTreeMap<ElementPath, DeltaEntry>,
    used: &mut BTreeSet<ElementPath>,
) -> Result<common::ConfigGroup, UpdateError> {
    let key = ElementPath::new(ElementKind::Group, path.to_string());
    // A group in the delta takes its version, mod_policy and membership from the write set;
    // any other group keeps those of the current config.
    let base = if delta.contains_key(&key) {
        used.insert(key.clone());
        written
    } else {
        existing
    }
    .ok_or_else(|| UpdateError::Dangling(key.clone()))?;

    let mut out = common::ConfigGroup {
        version: base.version,
        mod_policy: base.mod_policy.clone(),
        ..Default::default()
    };
    for name in base.values.keys() {
        let element = ElementPath::new(ElementKind::Value, format!("{path}/{name}"));
        let source = if delta.contains_key(&element) {
            used.insert(element.clone());
            written.and_then(|w| w.values.get(name))
        } else {
            existing.and_then(|e| e.values.get(name))
        };
        let value = source.ok_or_else(|| UpdateError::Dangling(element.clone()))?;
        out.values.insert(name.clone(), value.clone());
    }
    for name in base.policies.keys() {
        let element = ElementPath::new(ElementKind::Policy, format!("{path}/{name}"));
        let source = if delta.contains_key(&element) {
            used.insert(element.clone());
            written.and_then(|w| w.policies.get(name))
        } else {
            existing.and_then(|e| e.policies.get(name))
        };
        let policy = source.ok_or_else(|| UpdateError::Dangling(element.clone()))?;
        out.policies.insert(name.clone(), policy.clone());
    }
    for name in base.groups.keys() {
        let child = rebuild(
            &format!("{path}/{name}"),
            existing.and_then(|e| e.groups.get(name)),
            written.and_then(|w| w.groups.get(name)),
            delta,
            used,
        )?;
        out.groups.insert(name.clone(), child);
    }
    Ok(out)
}

fn apply_delta(
    current: &common::Config,
    update: &common::ConfigUpdate,
    delta: &BTreeMap<ElementPath, DeltaEntry>,
) -> Result<common::Config, UpdateError> {
    let mut used = BTreeSet::new();
    let root = rebuild(
        &format!("/{CHANNEL_GROUP}"),
        current.channel_group.as_ref(),
        update.write_set.as_ref(),
        delta,
        &mut used,
    )?;
    if let Some(orphan) = delta.keys().find(|e| !used.contains(*e)) {
        return Err(UpdateError::Orphan {
            element: orphan.clone(),
            group: orphan.parent().to_string(),
        });
    }
    Ok(common::Config {
        sequence: current.sequence + 1,
        channel_group: Some(root),
    })
}

/// Produces the config that results from `update` (sequence + 1): checks the read set and the
/// version rules, then overlays the delta. Signatures are not looked at; see [`authorize`].
pub fn apply(
    current: &common::Config,
    update: &common::ConfigUpdate,
) -> Result<common::Config, UpdateError> {
    let delta = compute_delta(current, update)?;
    apply_delta(current, update, &delta)
}

// ---------------------------------------------------------------------------------------------
// Computing an update (configtxlator compute_update).

/// Read-set and write-set entries of one map of a group, plus the unchanged entries (which join
/// both sets, version only, when the map's membership changes) and whether membership changed.
struct MapUpdate<T> {
    read: BTreeMap<String, T>,
    write: BTreeMap<String, T>,
    same: BTreeMap<String, T>,
    members_changed: bool,
}

/// The two leaf kinds of a config tree, values and policies, differ only in their payload.
trait ConfigLeaf: Clone + Default {
    fn same_content(&self, other: &Self) -> bool;
    /// This element's payload and `mod_policy` at `version`.
    fn at_version(&self, version: u64) -> Self;
    fn version(&self) -> u64;
}

impl ConfigLeaf for common::ConfigPolicy {
    fn same_content(&self, other: &Self) -> bool {
        self.mod_policy == other.mod_policy && self.policy == other.policy
    }
    fn at_version(&self, version: u64) -> Self {
        common::ConfigPolicy {
            version,
            ..self.clone()
        }
    }
    fn version(&self) -> u64 {
        self.version
    }
}

impl ConfigLeaf for common::ConfigValue {
    fn same_content(&self, other: &Self) -> bool {
        self.mod_policy == other.mod_policy && self.value == other.value
    }
    fn at_version(&self, version: u64) -> Self {
        common::ConfigValue {
            version,
            ..self.clone()
        }
    }
    fn version(&self) -> u64 {
        self.version
    }
}

/// Splits one map of values or policies into unchanged (read at their version), changed
/// (written at version + 1) and new (written at version 0) elements.
fn leaves_update<T: ConfigLeaf>(
    original: &BTreeMap<String, T>,
    updated: &BTreeMap<String, T>,
) -> MapUpdate<T> {
    let mut out = MapUpdate {
        read: BTreeMap::new(),
        write: BTreeMap::new(),
        same: BTreeMap::new(),
        members_changed: false,
    };
    for (name, old) in original {
        let Some(new) = updated.get(name) else {
            out.members_changed = true;
            continue;
        };
        if old.same_content(new) {
            out.same
                .insert(name.clone(), T::default().at_version(old.version()));
        } else {
            out.write
                .insert(name.clone(), new.at_version(old.version() + 1));
        }
    }
    for (name, new) in updated {
        if !original.contains_key(name) {
            out.members_changed = true;
            out.write.insert(name.clone(), new.at_version(0));
        }
    }
    out
}

fn groups_update(
    original: &BTreeMap<String, common::ConfigGroup>,
    updated: &BTreeMap<String, common::ConfigGroup>,
) -> MapUpdate<common::ConfigGroup> {
    let mut out = MapUpdate {
        read: BTreeMap::new(),
        write: BTreeMap::new(),
        same: BTreeMap::new(),
        members_changed: false,
    };
    for (name, old) in original {
        let Some(new) = updated.get(name) else {
            out.members_changed = true;
            continue;
        };
        let (read, write, changed) = group_update(old, new);
        if changed {
            out.read.insert(name.clone(), read);
            out.write.insert(name.clone(), write);
        } else {
            out.same.insert(name.clone(), read);
        }
    }
    for (name, new) in updated {
        if !original.contains_key(name) {
            out.members_changed = true;
            // Everything under a new group is new: diff it against an empty group.
            let (_, write, _) = group_update(&common::ConfigGroup::default(), new);
            out.write.insert(
                name.clone(),
                common::ConfigGroup {
                    version: 0,
                    mod_policy: new.mod_policy.clone(),
                    ..write
                },
            );
        }
    }
    out
}

/// Diffs two versions of a group: (read set, write set, whether anything changed).
fn group_update(
    original: &common::ConfigGroup,
    updated: &common::ConfigGroup,
) -> (common::ConfigGroup, common::ConfigGroup, bool) {
    let policies = leaves_update(&original.policies, &updated.policies);
    let values = leaves_update(&original.values, &updated.values);
    let groups = groups_update(&original.groups, &updated.groups);

    let members_changed =
        policies.members_changed || values.members_changed || groups.members_changed;
    if !members_changed && original.mod_policy == updated.mod_policy {
        // Membership and mod_policy are unchanged: the group keeps its version and only the
        // modified children appear, under an unversioned-bump entry for this group.
        let changed = !(policies.read.is_empty()
            && policies.write.is_empty()
            && values.read.is_empty()
            && values.write.is_empty()
            && groups.read.is_empty()
            && groups.write.is_empty());
        let version_only = common::ConfigGroup {
            version: original.version,
            ..Default::default()
        };
        if !changed {
            return (version_only.clone(), version_only, false);
        }
        let read = common::ConfigGroup {
            version: original.version,
            policies: policies.read,
            values: values.read,
            groups: groups.read,
            mod_policy: String::new(),
        };
        let write = common::ConfigGroup {
            version: original.version,
            policies: policies.write,
            values: values.write,
            groups: groups.write,
            mod_policy: String::new(),
        };
        return (read, write, true);
    }

    // Membership or mod_policy changed: the group is rewritten at version + 1 and must list
    // every child it keeps, so the unchanged ones join both sets at their current versions.
    let mut read = common::ConfigGroup {
        version: original.version,
        policies: policies.read,
        values: values.read,
        groups: groups.read,
        mod_policy: String::new(),
    };
    let mut write = common::ConfigGroup {
        version: original.version + 1,
        policies: policies.write,
        values: values.write,
        groups: groups.write,
        mod_policy: updated.mod_policy.clone(),
    };
    for (name, same) in policies.same {
        read.policies.insert(name.clone(), same.clone());
        write.policies.insert(name, same);
    }
    for (name, same) in values.same {
        read.values.insert(name.clone(), same.clone());
        write.values.insert(name, same);
    }
    for (name, same) in groups.same {
        read.groups.insert(name.clone(), same.clone());
        write.groups.insert(name, same);
    }
    (read, write, true)
}

/// Computes the `ConfigUpdate` that turns `current` into `desired`, exactly as `configtxlator
/// compute_update` does: changed elements are written at version + 1, new ones at 0; the
/// groups on the way to a change appear in the read set at their current versions; a group
/// whose set of children (or mod_policy) changes is rewritten at version + 1 listing every child
/// it keeps. Errors with [`UpdateError::NoDifferences`] when the configs are equal.
pub fn compute_update(
    channel_id: &str,
    current: &common::Config,
    desired: &common::Config,
) -> Result<common::ConfigUpdate, UpdateError> {
    let original = current
        .channel_group
        .as_ref()
        .ok_or(UpdateError::MissingChannelGroup("current"))?;
    let updated = desired
        .channel_group
        .as_ref()
        .ok_or(UpdateError::MissingChannelGroup("desired"))?;
    let (read_set, write_set, changed) = group_update(original, updated);
    if !changed {
        return Err(UpdateError::NoDifferences);
    }
    Ok(common::ConfigUpdate {
        channel_id: channel_id.to_string(),
        read_set: Some(read_set),
        write_set: Some(write_set),
        isolated_data: BTreeMap::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// Envelopes and signatures.

/// Wraps an update in an unsigned `ConfigUpdateEnvelope`, ready for [`sign`].
pub fn new_envelope(update: &common::ConfigUpdate) -> common::ConfigUpdateEnvelope {
    common::ConfigUpdateEnvelope {
        config_update: update.encode_to_vec(),
        signatures: Vec::new(),
    }
}

/// Decodes the `ConfigUpdate` an envelope carries.
pub fn decode_update(
    envelope: &common::ConfigUpdateEnvelope,
) -> Result<common::ConfigUpdate, UpdateError> {
    common::ConfigUpdate::decode(envelope.config_update.as_slice()).map_err(|source| {
        UpdateError::Decode {
            what: "config update",
            source,
        }
    })
}

/// Adds `signer`'s signature: a `ConfigSignature` whose header is `SignatureHeader{creator =
/// signer's serialized identity, nonce}` and whose signature covers `signature_header ‖
/// config_update`. The nonce must be fresh random bytes (it is an argument so this stays pure).
pub fn sign(
    envelope: &mut common::ConfigUpdateEnvelope,
    signer: &SigningIdentity,
    nonce: [u8; NONCE_LEN],
) {
    let signature_header = common::SignatureHeader {
        creator: signer.serialized().to_vec(),
        nonce: nonce.to_vec(),
    }
    .encode_to_vec();
    let mut signed = Vec::with_capacity(signature_header.len() + envelope.config_update.len());
    signed.extend_from_slice(&signature_header);
    signed.extend_from_slice(&envelope.config_update);
    let signature = signer.sign(&signed);
    envelope.signatures.push(common::ConfigSignature {
        signature_header,
        signature,
    });
}

/// The signatures of an envelope as policy input: decoded headers and the signed bytes.
struct SignatureSet {
    /// (signed bytes, creator, signature) per signature.
    entries: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

impl SignatureSet {
    fn from_envelope(envelope: &common::ConfigUpdateEnvelope) -> Result<SignatureSet, UpdateError> {
        let mut entries = Vec::with_capacity(envelope.signatures.len());
        for (index, sig) in envelope.signatures.iter().enumerate() {
            let header = common::SignatureHeader::decode(sig.signature_header.as_slice())
                .map_err(|source| UpdateError::MalformedSignature { index, source })?;
            let mut data =
                Vec::with_capacity(sig.signature_header.len() + envelope.config_update.len());
            data.extend_from_slice(&sig.signature_header);
            data.extend_from_slice(&envelope.config_update);
            entries.push((data, header.creator, sig.signature.clone()));
        }
        Ok(SignatureSet { entries })
    }

    fn signed_data(&self) -> Vec<SignedData<'_>> {
        self.entries
            .iter()
            .map(|(data, identity, signature)| SignedData {
                data,
                identity,
                signature,
            })
            .collect()
    }
}

/// Who signed `envelope`. With `msps` (normally the channel's), each identity is validated at
/// `now_unix_secs` and its signature verified, and problems are reported per signer.
pub fn signers(
    envelope: &common::ConfigUpdateEnvelope,
    msps: Option<&MspManager>,
    now_unix_secs: u64,
) -> Vec<Signer> {
    envelope
        .signatures
        .iter()
        .map(|sig| {
            let header = match common::SignatureHeader::decode(sig.signature_header.as_slice()) {
                Ok(h) => h,
                Err(e) => {
                    return Signer {
                        msp_id: String::new(),
                        subject: None,
                        is_admin: None,
                        problem: Some(format!("signature header does not decode: {e}")),
                    };
                }
            };
            let msp_id = match msp::SerializedIdentity::decode(header.creator.as_slice()) {
                Ok(id) => id.mspid,
                Err(e) => {
                    return Signer {
                        msp_id: String::new(),
                        subject: None,
                        is_admin: None,
                        problem: Some(format!("creator does not decode: {e}")),
                    };
                }
            };
            let Some(msps) = msps else {
                return Signer {
                    msp_id,
                    subject: None,
                    is_admin: None,
                    problem: None,
                };
            };
            match msps.deserialize_identity(&header.creator, now_unix_secs) {
                Err(e) => Signer {
                    msp_id,
                    subject: None,
                    is_admin: None,
                    problem: Some(e.to_string()),
                },
                Ok(identity) => {
                    let mut signed = sig.signature_header.clone();
                    signed.extend_from_slice(&envelope.config_update);
                    Signer {
                        msp_id,
                        subject: Some(identity.subject().to_string()),
                        is_admin: Some(identity.is_admin()),
                        problem: identity
                            .verify(&signed, &sig.signature)
                            .err()
                            .map(|e| format!("signature does not verify: {e}")),
                    }
                }
            }
        })
        .collect()
}

/// Wraps a signed update in the `Envelope` a client broadcasts to the ordering service:
/// `Payload{header{ChannelHeader{type CONFIG_UPDATE, channel_id, timestamp, tx_id}, SignatureHeader
/// {creator, nonce}}, data = ConfigUpdateEnvelope}`, signed by `submitter` over the payload.
pub fn config_update_transaction(
    channel_id: &str,
    envelope: &common::ConfigUpdateEnvelope,
    submitter: &SigningIdentity,
    nonce: [u8; NONCE_LEN],
    timestamp: prost_types::Timestamp,
) -> common::Envelope {
    let creator = submitter.serialized().to_vec();
    let channel_header = common::ChannelHeader {
        r#type: common::HeaderType::ConfigUpdate as i32,
        version: 0,
        timestamp: Some(timestamp),
        channel_id: channel_id.to_string(),
        tx_id: compute_tx_id(&nonce, &creator),
        epoch: 0,
        extension: Vec::new(),
        tls_cert_hash: Vec::new(),
    };
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: common::SignatureHeader {
                creator,
                nonce: nonce.to_vec(),
            }
            .encode_to_vec(),
        }),
        data: envelope.encode_to_vec(),
    }
    .encode_to_vec();
    let signature = submitter.sign(&payload);
    common::Envelope { payload, signature }
}

// ---------------------------------------------------------------------------------------------
// Authorization.

/// Checks a signed update against the current config without requiring it to be authorized:
/// channel id, read set, version rules, every changed element's `mod_policy` evaluated over the
/// signatures (with explanations), and the resulting config: valid, still with its Application
/// and Orderer groups, and no organization's MSP id changed (Fabric's `ValidateNew`). A dry run
/// shows the returned [`Authorization`]; [`authorize`] additionally demands every policy be met.
pub fn check(
    current: &ChannelConfig,
    envelope: &common::ConfigUpdateEnvelope,
    now_unix_secs: u64,
) -> Result<Authorization, UpdateError> {
    let update = decode_update(envelope)?;
    if update.channel_id != current.channel_id() {
        return Err(UpdateError::WrongChannel {
            update: update.channel_id,
            channel: current.channel_id().to_string(),
        });
    }
    let delta = compute_delta(current.config(), &update)?;

    let signatures = SignatureSet::from_envelope(envelope)?;
    let signed_data = signatures.signed_data();
    let verified = verify_signers(&signed_data, current.msp_manager(), now_unix_secs);
    let mut evaluations: BTreeMap<&str, Evaluation> = BTreeMap::new();
    let mut changes = Vec::with_capacity(delta.len());
    for (element, entry) in &delta {
        let authorization = match &entry.policy {
            None => None,
            Some(policy) => {
                let evaluation = match evaluations.get(policy.as_str()) {
                    Some(e) => e.clone(),
                    None => {
                        let e = current
                            .policies()
                            .evaluate_verified(policy, &verified)
                            .map_err(|source| UpdateError::Policy {
                                element: element.clone(),
                                policy: policy.clone(),
                                source: Box::new(source),
                            })?;
                        evaluations.insert(policy, e.clone());
                        e
                    }
                };
                Some((policy.clone(), evaluation))
            }
        };
        changes.push(ElementChange {
            element: element.clone(),
            change: entry.change,
            authorization,
        });
    }

    let next_config = apply_delta(current.config(), &update, &delta)?;
    keeps_sections(current.config(), &next_config)?;
    let next = ChannelConfig::from_config(current.channel_id(), &next_config)
        .map_err(UpdateError::InvalidResult)?;
    keeps_msp_ids(current, &next)?;
    Ok(Authorization {
        channel_id: current.channel_id().to_string(),
        changes,
        next_config,
    })
}

/// Fabric's `ValidateNew`, first half: a config that has an Application or Orderer group keeps
/// it.
fn keeps_sections(current: &common::Config, next: &common::Config) -> Result<(), UpdateError> {
    let groups = |config: &common::Config| {
        config
            .channel_group
            .as_ref()
            .map(|root| root.groups.keys().cloned().collect::<BTreeSet<String>>())
            .unwrap_or_default()
    };
    let (before, after) = (groups(current), groups(next));
    for section in [APPLICATION_GROUP, ORDERER_GROUP] {
        if before.contains(section) && !after.contains(section) {
            return Err(UpdateError::SectionRemoved {
                group: format!("/{CHANNEL_GROUP}/{section}"),
            });
        }
    }
    Ok(())
}

/// Fabric's `ValidateNew`, second half: an application or orderer organization group present
/// before and after the update keeps its MSP id. (Groups are matched by key, as Fabric does.)
fn keeps_msp_ids(current: &ChannelConfig, next: &ChannelConfig) -> Result<(), UpdateError> {
    let orderer_orgs = |config: &ChannelConfig| -> BTreeMap<String, String> {
        config
            .orderer()
            .organizations
            .iter()
            .map(|o| (o.name.clone(), o.msp_id.clone()))
            .collect()
    };
    let application_orgs = |config: &ChannelConfig| -> BTreeMap<String, String> {
        config
            .organizations()
            .iter()
            .map(|o| (o.name.clone(), o.msp_id.clone()))
            .collect()
    };
    let sections = [
        (ORDERER_GROUP, orderer_orgs(current), orderer_orgs(next)),
        (
            APPLICATION_GROUP,
            application_orgs(current),
            application_orgs(next),
        ),
    ];
    for (section, before, after) in sections {
        for (name, from) in &before {
            if let Some(to) = after.get(name).filter(|to| *to != from) {
                return Err(UpdateError::MspIdChanged {
                    group: format!("/{CHANNEL_GROUP}/{section}/{name}"),
                    from: from.clone(),
                    to: to.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Checks a signed update (see [`check`]) and requires every changed element's `mod_policy` to
/// be satisfied; the error names the first element that is not, with the explanation of who
/// signed and who is missing.
pub fn authorize(
    current: &ChannelConfig,
    envelope: &common::ConfigUpdateEnvelope,
    now_unix_secs: u64,
) -> Result<Authorization, UpdateError> {
    let authorization = check(current, envelope, now_unix_secs)?;
    if let Some(change) = authorization.first_unsatisfied() {
        let (policy, evaluation) = change
            .authorization
            .as_ref()
            .expect("an unsatisfied change always carries its evaluation");
        return Err(UpdateError::Unauthorized {
            element: change.element.clone(),
            policy: policy.clone(),
            explanation: evaluation.explanation.to_string(),
        });
    }
    Ok(authorization)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(version: u64, bytes: &[u8]) -> common::ConfigValue {
        common::ConfigValue {
            version,
            value: bytes.to_vec(),
            mod_policy: "Admins".to_string(),
        }
    }

    fn group(version: u64) -> common::ConfigGroup {
        common::ConfigGroup {
            version,
            mod_policy: "Admins".to_string(),
            ..Default::default()
        }
    }

    /// /Channel{A{x=1, y=2}, B{z=3}}
    fn sample() -> common::Config {
        let mut a = group(0);
        a.values.insert("x".into(), value(0, b"1"));
        a.values.insert("y".into(), value(0, b"2"));
        let mut b = group(0);
        b.values.insert("z".into(), value(0, b"3"));
        let mut root = group(0);
        root.groups.insert("A".into(), a);
        root.groups.insert("B".into(), b);
        common::Config {
            sequence: 4,
            channel_group: Some(root),
        }
    }

    fn root_mut(config: &mut common::Config) -> &mut common::ConfigGroup {
        config.channel_group.as_mut().expect("sample has a root")
    }

    #[test]
    fn modified_value_is_bumped_and_parents_are_read() {
        let current = sample();
        let mut desired = current.clone();
        root_mut(&mut desired)
            .groups
            .get_mut("A")
            .expect("A")
            .values
            .insert("x".into(), value(0, b"changed"));
        let update = compute_update("ch", &current, &desired).expect("update");
        let read = update.read_set.as_ref().expect("read set");
        let write = update.write_set.as_ref().expect("write set");
        // Membership unchanged: A is read and written at its version, only x is written.
        assert_eq!(read.groups["A"].version, 0);
        assert!(read.groups["A"].values.is_empty());
        assert!(!read.groups.contains_key("B"));
        assert_eq!(write.groups["A"].version, 0);
        assert_eq!(write.groups["A"].values.len(), 1);
        assert_eq!(write.groups["A"].values["x"].version, 1);

        let next = apply(&current, &update).expect("apply");
        assert_eq!(next.sequence, 5);
        let next_a = &next.channel_group.as_ref().expect("root").groups["A"];
        assert_eq!(next_a.values["x"].value, b"changed");
        assert_eq!(next_a.values["x"].version, 1);
        assert_eq!(next_a.values["y"], value(0, b"2"));
        assert_eq!(next_a.version, 0);
    }

    #[test]
    fn removed_value_bumps_its_group_and_disappears() {
        let current = sample();
        let mut desired = current.clone();
        root_mut(&mut desired)
            .groups
            .get_mut("A")
            .expect("A")
            .values
            .remove("y");
        let update = compute_update("ch", &current, &desired).expect("update");
        let write = update.write_set.as_ref().expect("write set");
        assert_eq!(write.groups["A"].version, 1);
        assert_eq!(write.groups["A"].values["x"].version, 0);
        assert!(!write.groups["A"].values.contains_key("y"));
        let next = apply(&current, &update).expect("apply");
        let next_a = &next.channel_group.as_ref().expect("root").groups["A"];
        assert_eq!(next_a.version, 1);
        assert!(next_a.values.contains_key("x"));
        assert!(!next_a.values.contains_key("y"));
        assert_eq!(next, desired_with_versions(&desired));
    }

    /// `desired` with the versions the update assigns (A bumped to 1), sequence + 1.
    fn desired_with_versions(desired: &common::Config) -> common::Config {
        let mut expected = desired.clone();
        expected.sequence += 1;
        root_mut(&mut expected)
            .groups
            .get_mut("A")
            .expect("A")
            .version = 1;
        expected
    }

    #[test]
    fn equal_configs_have_no_update() {
        let current = sample();
        assert!(matches!(
            compute_update("ch", &current, &current),
            Err(UpdateError::NoDifferences)
        ));
    }

    #[test]
    fn stale_and_skipped_versions_are_rejected() {
        let current = sample();
        let mut desired = current.clone();
        root_mut(&mut desired)
            .groups
            .get_mut("B")
            .expect("B")
            .values
            .insert("z".into(), value(0, b"new"));
        let mut update = compute_update("ch", &current, &desired).expect("update");

        let mut stale = update.clone();
        stale
            .read_set
            .as_mut()
            .expect("read")
            .groups
            .get_mut("B")
            .expect("B")
            .version = 7;
        assert!(matches!(
            apply(&current, &stale),
            Err(UpdateError::StaleReadSet {
                read: 7,
                current: 0,
                ..
            })
        ));

        update
            .write_set
            .as_mut()
            .expect("write")
            .groups
            .get_mut("B")
            .expect("B")
            .values
            .get_mut("z")
            .expect("z")
            .version = 3;
        assert!(matches!(
            apply(&current, &update),
            Err(UpdateError::VersionSkip {
                proposed: 3,
                current: 0,
                ..
            })
        ));
    }

    #[test]
    fn new_element_without_group_bump_is_an_orphan() {
        let current = sample();
        let mut write = group(0);
        let mut a = group(0);
        a.values.insert("new".into(), value(0, b"n"));
        write.groups.insert("A".into(), a);
        let mut read = group(0);
        read.groups.insert("A".into(), group(0));
        let update = common::ConfigUpdate {
            channel_id: "ch".into(),
            read_set: Some(read),
            write_set: Some(write),
            isolated_data: BTreeMap::new(),
        };
        assert!(matches!(
            apply(&current, &update),
            Err(UpdateError::Orphan { ref group, .. }) if group == "/Channel/A"
        ));
    }

    #[test]
    fn mod_policy_resolution_follows_policy_for_item() {
        let value = ElementPath::new(ElementKind::Value, "/Channel/Application/Org1/MSP".into());
        let group = ElementPath::new(ElementKind::Group, "/Channel/Application/Org1".into());
        let root = ElementPath::new(ElementKind::Group, "/Channel".into());
        assert_eq!(
            resolve_mod_policy(&value, "Admins"),
            "/Channel/Application/Org1/Admins"
        );
        assert_eq!(
            resolve_mod_policy(&group, "Admins"),
            "/Channel/Application/Org1/Admins"
        );
        assert_eq!(resolve_mod_policy(&root, "Admins"), "/Channel/Admins");
        assert_eq!(
            resolve_mod_policy(&value, "/Channel/Orderer/Admins"),
            "/Channel/Orderer/Admins"
        );
    }

    #[test]
    fn invalid_mod_policies_are_rejected() {
        let e = ElementPath::new(ElementKind::Value, "/Channel/x".into());
        assert!(validate_mod_policy(&e, "Admins").is_ok());
        assert!(validate_mod_policy(&e, "/Channel/Application/Admins").is_ok());
        assert!(validate_mod_policy(&e, "").is_err());
        assert!(validate_mod_policy(&e, "../Admins").is_err());
        assert!(validate_mod_policy(&e, "/Channel//Admins").is_err());
    }
}
