//! Channel configuration: the declarative channel file, the `common.Config` tree built from it,
//! and the decoded view of a config tree that the rest of GridLedger reads.
//!
//! A channel's configuration is Fabric's `common.Config`: a tree of `ConfigGroup`s rooted at
//! `/Channel`, whose groups, values and policies each carry a version and a `mod_policy`. This
//! module owns both directions:
//!
//! - [`ChannelSpec`] — what a channel admin writes (TOML): organizations with their MSP folders,
//!   the ordering service, batch settings, policies and capabilities. [`ChannelSpec::validate`]
//!   checks it; [`ChannelSpec::to_config`] builds the tree exactly as Fabric's `configtxgen`
//!   lays it out, so Fabric tools read our genesis blocks and we read theirs.
//! - [`ChannelConfig`] — a validated, decoded view of any `common.Config` (ours or Fabric's):
//!   organizations, MSPs, orderer settings, capabilities and the policy tree.
//!
//! The element names below are Fabric's; they are the keys of the config maps and so part of
//! the hashed bytes.

mod build;
mod certificates;
pub mod duration;
pub mod spec;
pub mod view;

pub use certificates::ChannelCertificate;
pub use spec::{
    ApplicationPolicies, ApplicationSpec, ChannelPolicies, ChannelSection, ChannelSpec,
    ConsenterSpec, EtcdRaftSpec, OrdererOrgPolicies, OrdererOrganizationSpec, OrdererPolicies,
    OrdererSpec, OrgPolicies, OrganizationSpec, SpecError, config_from_file,
};
pub use view::{
    AnchorPeer, ApplicationConfig, BatchConfig, ChannelConfig, ConfigError, ConsensusState,
    ConsenterConfig, EtcdRaftOptions, OrdererConfig, OrdererOrganizationConfig, OrganizationConfig,
};

/// Key of the root group of every channel config (`/Channel`).
pub const CHANNEL_GROUP: &str = "Channel";
/// Key of the ordering-service group (`/Channel/Orderer`).
pub const ORDERER_GROUP: &str = "Orderer";
/// Key of the application group (`/Channel/Application`).
pub const APPLICATION_GROUP: &str = "Application";

/// Value `common.HashingAlgorithm` of the root group.
pub const HASHING_ALGORITHM_KEY: &str = "HashingAlgorithm";
/// Value `common.BlockDataHashingStructure` of the root group.
pub const BLOCK_DATA_HASHING_STRUCTURE_KEY: &str = "BlockDataHashingStructure";
/// Value `common.OrdererAddresses` of the root group (legacy; Fabric 2.x uses org `Endpoints`).
pub const ORDERER_ADDRESSES_KEY: &str = "OrdererAddresses";
/// Value `common.Capabilities` of the root, orderer and application groups.
pub const CAPABILITIES_KEY: &str = "Capabilities";
/// Value `orderer.ConsensusType` of the orderer group.
pub const CONSENSUS_TYPE_KEY: &str = "ConsensusType";
/// Value `orderer.BatchSize` of the orderer group.
pub const BATCH_SIZE_KEY: &str = "BatchSize";
/// Value `orderer.BatchTimeout` of the orderer group.
pub const BATCH_TIMEOUT_KEY: &str = "BatchTimeout";
/// Value `orderer.ChannelRestrictions` of the orderer group.
pub const CHANNEL_RESTRICTIONS_KEY: &str = "ChannelRestrictions";
/// Value `msp.MSPConfig` of every organization group.
pub const MSP_KEY: &str = "MSP";
/// Value `common.OrdererAddresses` of an orderer organization group.
pub const ENDPOINTS_KEY: &str = "Endpoints";
/// Value `protos.AnchorPeers` of an application organization group.
pub const ANCHOR_PEERS_KEY: &str = "AnchorPeers";
/// Value `protos.ACLs` of the application group.
pub const ACLS_KEY: &str = "ACLs";

/// Policy read access is checked against.
pub const READERS_POLICY: &str = "Readers";
/// Policy write (submit) access is checked against.
pub const WRITERS_POLICY: &str = "Writers";
/// Policy that guards configuration changes (the `mod_policy` configtxgen sets everywhere).
pub const ADMINS_POLICY: &str = "Admins";
/// Default chaincode endorsement policy of the application group and its organizations.
pub const ENDORSEMENT_POLICY: &str = "Endorsement";
/// Policy a chaincode definition needs before it can be committed (`_lifecycle`).
pub const LIFECYCLE_ENDORSEMENT_POLICY: &str = "LifecycleEndorsement";
/// Orderer-group policy that block signatures must satisfy.
pub const BLOCK_VALIDATION_POLICY: &str = "BlockValidation";

/// The only hashing algorithm Fabric channels use.
pub const SHA256: &str = "SHA256";
/// `BlockDataHashingStructure.width` meaning "hash the concatenated data" (no Merkle tree).
pub const BLOCK_DATA_HASHING_WIDTH: u32 = u32::MAX;
/// The consensus type GridLedger's ordering service runs.
pub const ETCDRAFT: &str = "etcdraft";
/// The capability level GridLedger writes by default (Fabric v2.0 semantics).
pub const V2_0: &str = "V2_0";

/// Longest channel name Fabric accepts.
pub const MAX_CHANNEL_NAME_LEN: usize = 249;

/// Checks a channel name against Fabric's rule: `[a-z][a-z0-9.-]*`, at most 249 characters.
pub fn validate_channel_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("the channel name is empty".to_string()),
        Some(c) if !c.is_ascii_lowercase() => {
            return Err(format!(
                "channel name {name:?} must start with a lowercase letter (a-z)"
            ));
        }
        Some(_) => {}
    }
    if name.len() > MAX_CHANNEL_NAME_LEN {
        return Err(format!(
            "channel name is {} characters long; at most {MAX_CHANNEL_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(bad) =
        chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "channel name {name:?} contains {bad:?}; only a-z, 0-9, '.' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Checks a config element key (group, value or policy name) against Fabric's rule (configtx
/// `configAllowedChars`): `[a-zA-Z0-9.-]+` — no underscore —, at most 249 characters, and
/// neither "." nor "..".
pub fn validate_config_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the name is empty".to_string());
    }
    if key.len() > MAX_CHANNEL_NAME_LEN {
        return Err(format!(
            "name {key:?} is longer than {MAX_CHANNEL_NAME_LEN} characters"
        ));
    }
    if key == "." || key == ".." {
        return Err(format!("name {key:?} is reserved"));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-')))
    {
        return Err(format!(
            "name {key:?} contains {bad:?}; only letters, digits, '.' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_fabric_rule() {
        assert!(validate_channel_name("market").is_ok());
        assert!(validate_channel_name("meter-retailer.v2").is_ok());
        assert!(validate_channel_name("").is_err());
        assert!(validate_channel_name("Market").is_err());
        assert!(validate_channel_name("1market").is_err());
        assert!(validate_channel_name("market_1").is_err());
        assert!(validate_channel_name(&"a".repeat(249)).is_ok());
        assert!(validate_channel_name(&"a".repeat(250)).is_err());
    }

    #[test]
    fn config_keys_follow_fabric_rule() {
        assert!(validate_config_key("DSOMSP").is_ok());
        assert!(validate_config_key("Org1.example-com").is_ok());
        assert!(validate_config_key(&"a".repeat(249)).is_ok());
        assert!(validate_config_key(&"a".repeat(250)).is_err());
        // Fabric's configAllowedChars has no underscore.
        let err = validate_config_key("Org1_MSP").expect_err("underscore");
        assert!(err.contains("'_'"), "{err}");
        assert!(validate_config_key("").is_err());
        assert!(validate_config_key("..").is_err());
        assert!(validate_config_key("a/b").is_err());
        assert!(validate_config_key("a b").is_err());
    }
}
