//! Per-resource access control (Fabric's ACLs): which channel policy guards each peer
//! resource — proposals, the query and configuration system chaincodes' functions, the
//! chaincode lifecycle's channel functions, chaincode-to-chaincode calls, block and filtered
//! block delivery, and the Gateway's commit status and chaincode events.
//!
//! A resource's policy is the one the channel config in force names for it in the Application
//! group's `ACLs` value, else Fabric's default (below). A reference that does not start with
//! `/` is relative to `/Channel/Application`, as Fabric reads it. The config is read at every
//! check, so a committed config update that changes an ACL applies to the next request.
//!
//! A refusal is an [`AclError`] naming the resource, the channel, the policy and the identity,
//! and it is logged (target `gridledger_peer::acl`) with the same facts, so an operator can
//! tell who was refused, for what, and why.

use gridledger_channels::config::ChannelConfig;
use gridledger_channels::policy::SignedData;
use gridledger_identity::IdentityId;

/// `peer/Propose`: proposals to application chaincodes.
pub const PEER_PROPOSE: &str = "peer/Propose";
/// `peer/ChaincodeToChaincode`: a chaincode calling another chaincode (checked on the
/// callee's channel).
pub const PEER_CHAINCODE_TO_CHAINCODE: &str = "peer/ChaincodeToChaincode";
/// `event/Block`: full blocks from the peer's Deliver service.
pub const EVENT_BLOCK: &str = "event/Block";
/// `event/FilteredBlock`: filtered blocks from the peer's Deliver service.
pub const EVENT_FILTERED_BLOCK: &str = "event/FilteredBlock";
/// `gateway/CommitStatus`: the Gateway's CommitStatus.
pub const GATEWAY_COMMIT_STATUS: &str = "gateway/CommitStatus";
/// `gateway/ChaincodeEvents`: the Gateway's ChaincodeEvents.
pub const GATEWAY_CHAINCODE_EVENTS: &str = "gateway/ChaincodeEvents";

/// `/Channel/Application/Readers`.
pub const CHANNEL_READERS: &str = "/Channel/Application/Readers";
/// `/Channel/Application/Writers`.
pub const CHANNEL_WRITERS: &str = "/Channel/Application/Writers";

/// Fabric's default policy of every channel resource, in the order of Fabric's sample
/// `configtx.yaml` (`Application: ACLs:`), plus the Gateway's two resources. The `lscc`
/// entries are kept so a channel config written for Fabric reads the same here, though
/// GridLedger has no `lscc`; `cscc/GetConfigBlock` and `cscc/GetChannelConfig` likewise (this
/// peer's cscc answers only its peer-local functions).
pub const DEFAULTS: &[(&str, &str)] = &[
    ("_lifecycle/CheckCommitReadiness", CHANNEL_WRITERS),
    ("_lifecycle/CommitChaincodeDefinition", CHANNEL_WRITERS),
    ("_lifecycle/QueryChaincodeDefinition", CHANNEL_WRITERS),
    ("_lifecycle/QueryChaincodeDefinitions", CHANNEL_WRITERS),
    ("lscc/ChaincodeExists", CHANNEL_READERS),
    ("lscc/GetDeploymentSpec", CHANNEL_READERS),
    ("lscc/GetChaincodeData", CHANNEL_READERS),
    ("lscc/GetInstantiatedChaincodes", CHANNEL_READERS),
    ("qscc/GetChainInfo", CHANNEL_READERS),
    ("qscc/GetBlockByNumber", CHANNEL_READERS),
    ("qscc/GetBlockByHash", CHANNEL_READERS),
    ("qscc/GetTransactionByID", CHANNEL_READERS),
    ("qscc/GetBlockByTxID", CHANNEL_READERS),
    ("cscc/GetConfigBlock", CHANNEL_READERS),
    ("cscc/GetChannelConfig", CHANNEL_READERS),
    (PEER_PROPOSE, CHANNEL_WRITERS),
    (PEER_CHAINCODE_TO_CHAINCODE, CHANNEL_WRITERS),
    (EVENT_BLOCK, CHANNEL_READERS),
    (EVENT_FILTERED_BLOCK, CHANNEL_READERS),
    (GATEWAY_COMMIT_STATUS, CHANNEL_READERS),
    (GATEWAY_CHAINCODE_EVENTS, CHANNEL_READERS),
];

/// The `_lifecycle` functions that run on a channel and are guarded by a channel ACL of their
/// own name. `ApproveChaincodeDefinitionForMyOrg` and `QueryApprovedChaincodeDefinition` are
/// not channel resources in Fabric (they belong to the peer's own organization): here they are
/// proposals under [`PEER_PROPOSE`], and approving also needs an admin of the peer's
/// organization (checked by `_lifecycle` itself).
pub const LIFECYCLE_CHANNEL_FUNCTIONS: [&str; 4] = [
    "CheckCommitReadiness",
    "CommitChaincodeDefinition",
    "QueryChaincodeDefinition",
    "QueryChaincodeDefinitions",
];

/// Why a request was refused by an ACL (callers prefix "access denied").
#[derive(Debug, Clone, thiserror::Error)]
pub enum AclError {
    /// The signer does not satisfy the resource's policy.
    #[error(
        "{identity} may not use {resource} on channel {channel}: policy {policy} is not satisfied ({reason})"
    )]
    Denied {
        resource: String,
        channel: String,
        policy: String,
        identity: String,
        reason: String,
    },
    /// Neither the channel config nor the defaults map the resource to a policy.
    #[error(
        "{identity} may not use {resource} on channel {channel}: no policy is mapped to this resource"
    )]
    Unmapped {
        resource: String,
        channel: String,
        identity: String,
    },
}

/// Fabric's default policy of `resource`, if it has one.
pub fn default_policy(resource: &str) -> Option<&'static str> {
    DEFAULTS
        .iter()
        .find(|(r, _)| *r == resource)
        .map(|(_, p)| *p)
}

/// The policy path that guards `resource` under `config`: the config's `ACLs` override (a
/// relative reference resolved under `/Channel/Application`), else the default.
pub fn policy_for(config: &ChannelConfig, resource: &str) -> Option<String> {
    match config.application().acls.get(resource) {
        Some(reference) if reference.starts_with('/') => Some(reference.clone()),
        Some(reference) => Some(format!("/Channel/Application/{reference}")),
        None => default_policy(resource).map(str::to_owned),
    }
}

/// The resource a proposal to system chaincode `chaincode` calling `function` uses, or `None`
/// for a chaincode whose proposals are guarded by [`PEER_PROPOSE`].
pub fn proposal_resource(chaincode: &str, function: &str) -> String {
    match chaincode {
        crate::qscc::NAME | crate::cscc::NAME => format!("{chaincode}/{function}"),
        crate::validation::LIFECYCLE_NAMESPACE
            if LIFECYCLE_CHANNEL_FUNCTIONS.contains(&function) =>
        {
            format!("{chaincode}/{function}")
        }
        _ => PEER_PROPOSE.to_owned(),
    }
}

/// Who signed, for messages: subject and MSP of a valid identity, or what is known of one the
/// channel does not accept.
pub fn describe_identity(config: &ChannelConfig, serialized: &[u8], now_unix_secs: u64) -> String {
    match config
        .msp_manager()
        .deserialize_identity(serialized, now_unix_secs)
    {
        Ok(identity) => format!(
            "'{}' of {}{}",
            identity.subject(),
            identity.msp_id(),
            identity
                .role()
                .map(|r| format!(" ({r:?})").to_lowercase())
                .unwrap_or_default()
        ),
        Err(e) => match IdentityId::from_serialized(serialized) {
            Ok(id) => format!(
                "an identity of {} that channel {} does not accept ({e})",
                id.msp_id(),
                config.channel_id()
            ),
            Err(_) => "an unreadable identity".to_owned(),
        },
    }
}

/// Folds a multi-line policy explanation into one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks that `signed` (one or more signatures over the request's bytes) satisfies the
/// policy guarding `resource` on `config`'s channel at `now_unix_secs`; logs and returns the
/// refusal otherwise.
pub fn check(
    config: &ChannelConfig,
    resource: &str,
    signed: &[SignedData<'_>],
    now_unix_secs: u64,
) -> Result<(), AclError> {
    let identity = || {
        signed
            .iter()
            .map(|s| describe_identity(config, s.identity, now_unix_secs))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let channel = config.channel_id();
    let Some(policy) = policy_for(config, resource) else {
        let error = AclError::Unmapped {
            resource: resource.to_owned(),
            channel: channel.to_owned(),
            identity: identity(),
        };
        tracing::warn!(%channel, %resource, identity = %identity(), "access denied: no policy is mapped to the resource");
        return Err(error);
    };
    let reason = match config
        .policies()
        .check(&policy, signed, config.msp_manager(), now_unix_secs)
    {
        Ok(None) => return Ok(()),
        Ok(Some(explanation)) => one_line(&explanation.to_string()),
        Err(e) => format!("the policy cannot be evaluated: {e}"),
    };
    let identity = identity();
    tracing::warn!(%channel, %resource, %policy, %identity, %reason, "access denied");
    Err(AclError::Denied {
        resource: resource.to_owned(),
        channel: channel.to_owned(),
        policy,
        identity,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_identity::SigningIdentity;
    use gridledger_identity::material::{self, CryptoConfig};
    use std::path::{Path, PathBuf};

    const CRYPTO: &str = r#"
seed = "gridledger-acl-tests"

[[organizations]]
msp_id = "OrdererMSP"
orderers = [{ name = "orderer0" }]

[[organizations]]
msp_id = "DSOMSP"
peers = [{ name = "peer0.dso" }]
users = [{ name = "User1" }]
"#;

    /// Crypto material in a temporary folder, removed on drop.
    struct Material(PathBuf);

    impl Drop for Material {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl Material {
        fn new() -> Material {
            let dir = std::env::temp_dir().join(format!("gridledger-acl-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let crypto: CryptoConfig = toml::from_str(CRYPTO).expect("crypto config parses");
            let now = i64::try_from(crate::node::now_unix_secs()).expect("the clock fits");
            material::generate(&crypto, &dir, now - 3600).expect("generate crypto material");
            Material(dir)
        }

        /// The channel config of `ch` with DSOMSP as its member and `acls` as its ACLs.
        fn config(&self, acls: &str) -> ChannelConfig {
            let o = "organizations/OrdererMSP";
            let spec = format!(
                "name = \"ch\"\n\n[orderer]\ntype = \"etcdraft\"\n\n[[orderer.organizations]]\n\
                 msp_id = \"OrdererMSP\"\nmsp_dir = \"{o}/msp\"\nendpoints = [\"127.0.0.1:7050\"]\n\n\
                 [[orderer.consenters]]\nhost = \"127.0.0.1\"\nport = 7050\n\
                 client_tls_cert = \"{o}/orderers/orderer0/tls/server.crt\"\n\
                 server_tls_cert = \"{o}/orderers/orderer0/tls/server.crt\"\n\n\
                 [application.acls]\n{acls}\n\n\
                 [[organizations]]\nmsp_id = \"DSOMSP\"\nmsp_dir = \"organizations/DSOMSP/msp\"\n"
            );
            let config = gridledger_channels::config::ChannelSpec::parse(&spec)
                .expect("channel spec parses")
                .to_config(&self.0)
                .expect("channel config builds");
            ChannelConfig::from_config("ch", &config).expect("the config decodes")
        }

        fn identity(&self, kind: &str, name: &str) -> SigningIdentity {
            let base: &Path = &self.0;
            let base = base.join(format!("organizations/DSOMSP/{kind}/{name}/msp"));
            SigningIdentity::load(
                "DSOMSP",
                &base.join("signcerts/cert.pem"),
                &base.join("keystore/key.pem"),
            )
            .expect("load the identity")
        }
    }

    /// `check` of `resource` over `data` signed by `signer`.
    fn check_as(
        config: &ChannelConfig,
        resource: &str,
        signer: &SigningIdentity,
    ) -> Result<(), AclError> {
        let data = b"a request";
        let signature = signer.sign(data);
        let signed = SignedData {
            data,
            identity: signer.serialized(),
            signature: &signature,
        };
        check(config, resource, &[signed], crate::node::now_unix_secs())
    }

    #[test]
    fn overrides_replace_defaults_and_relative_references_resolve_under_application() {
        let material = Material::new();
        let config = material.config(
            "\"qscc/GetChainInfo\" = \"Admins\"\n\"event/Block\" = \"/Channel/Application/Writers\"",
        );
        assert_eq!(
            policy_for(&config, "qscc/GetChainInfo").as_deref(),
            Some("/Channel/Application/Admins")
        );
        assert_eq!(
            policy_for(&config, EVENT_BLOCK).as_deref(),
            Some(CHANNEL_WRITERS)
        );
        assert_eq!(
            policy_for(&config, "qscc/GetBlockByNumber").as_deref(),
            Some(CHANNEL_READERS)
        );
        assert_eq!(policy_for(&config, "qscc/Drop"), None);

        let peer = material.identity("peers", "peer0.dso");
        let user = material.identity("users", "User1");
        let admin = material.identity("users", "Admin");
        // Defaults: a peer reads but may not propose; a client may do both.
        check_as(&config, "qscc/GetBlockByNumber", &peer).expect("a peer is a Reader");
        let refused = check_as(&config, PEER_PROPOSE, &peer).expect_err("a peer is no Writer");
        let message = refused.to_string();
        assert!(
            message.contains(PEER_PROPOSE)
                && message.contains(CHANNEL_WRITERS)
                && message.contains("DSOMSP")
                && message.contains("channel ch"),
            "{message}"
        );
        check_as(&config, PEER_PROPOSE, &user).expect("a client is a Writer");
        // Overrides: GetChainInfo needs the Admins, block events the Writers.
        let refused = check_as(&config, "qscc/GetChainInfo", &user).expect_err("not an admin");
        assert!(
            refused.to_string().contains("/Channel/Application/Admins"),
            "{refused}"
        );
        check_as(&config, "qscc/GetChainInfo", &admin).expect("the admin is served");
        check_as(&config, EVENT_BLOCK, &peer).expect_err("a peer is no Writer");
        check_as(&config, EVENT_FILTERED_BLOCK, &peer).expect("filtered blocks keep Readers");
        // A resource with no policy is refused, naming it.
        let refused = check_as(&config, "qscc/Drop", &admin).expect_err("unmapped");
        assert!(
            matches!(&refused, AclError::Unmapped { resource, .. } if resource == "qscc/Drop"),
            "{refused}"
        );
    }

    #[test]
    fn every_default_is_an_application_policy_and_resources_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (resource, policy) in DEFAULTS {
            assert!(seen.insert(*resource), "{resource} listed twice");
            assert!(
                *policy == CHANNEL_READERS || *policy == CHANNEL_WRITERS,
                "{resource}: {policy}"
            );
        }
        assert_eq!(default_policy(PEER_PROPOSE), Some(CHANNEL_WRITERS));
        assert_eq!(default_policy("qscc/GetChainInfo"), Some(CHANNEL_READERS));
        assert_eq!(default_policy("qscc/NoSuchFunction"), None);
    }

    #[test]
    fn proposals_map_to_fabric_resources() {
        assert_eq!(proposal_resource("basic", "Transfer"), PEER_PROPOSE);
        assert_eq!(
            proposal_resource("qscc", "GetChainInfo"),
            "qscc/GetChainInfo"
        );
        assert_eq!(
            proposal_resource("_lifecycle", "CommitChaincodeDefinition"),
            "_lifecycle/CommitChaincodeDefinition"
        );
        assert_eq!(
            proposal_resource("_lifecycle", "ApproveChaincodeDefinitionForMyOrg"),
            PEER_PROPOSE
        );
        // An unknown qscc function has a resource of its own, with no policy: refused.
        assert_eq!(proposal_resource("qscc", "Drop"), "qscc/Drop");
        assert_eq!(default_policy("qscc/Drop"), None);
    }
}
