//! `gridledger channel …`: genesis blocks and inspection of channel configuration.

use anyhow::Context;
use clap::Subcommand;
use gridledger_channels::config::{ChannelConfig, ChannelSpec};
use gridledger_channels::genesis;
use gridledger_proto::common;
use gridledger_proto::prost::Message;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Write a channel's genesis block (a Fabric `common.Block` with a CONFIG envelope) from a
    /// declarative channel file (TOML; see examples/market-channel.toml).
    Genesis {
        /// Channel file.
        #[arg(long)]
        config: PathBuf,
        /// Folder the channel file's relative paths (MSP folders, TLS certificates) start from;
        /// defaults to the channel file's own folder.
        #[arg(long)]
        base_dir: Option<PathBuf>,
        /// Where to write the block (protobuf bytes).
        #[arg(long)]
        out: PathBuf,
        /// Channel-header timestamp, unix seconds (default: now). Fix it for byte-identical output.
        #[arg(long)]
        timestamp: Option<i64>,
    },
    /// Print the channel configuration carried by a config block (GridLedger's or Fabric's).
    Inspect {
        /// A config block file (protobuf `common.Block`).
        #[arg(long)]
        block: PathBuf,
    },
}

pub fn run(cmd: ChannelCommand) -> anyhow::Result<()> {
    match cmd {
        ChannelCommand::Genesis {
            config,
            base_dir,
            out,
            timestamp,
        } => {
            let spec = ChannelSpec::load(&config)
                .with_context(|| format!("loading channel file {}", config.display()))?;
            let base =
                base_dir.unwrap_or_else(|| config.parent().unwrap_or(Path::new(".")).to_path_buf());
            let tree = spec.to_config(&base).with_context(|| {
                format!(
                    "building the config of channel '{}' (paths relative to {})",
                    spec.name,
                    base.display()
                )
            })?;
            let seconds = timestamp.unwrap_or_else(crate::now_unix_secs);
            let block = genesis::genesis_block(
                &spec.name,
                tree,
                gridledger_proto::prost_types::Timestamp { seconds, nanos: 0 },
            );
            // Read the block back through the same checks every node applies before writing it.
            ChannelConfig::from_block(&block).context("validating the genesis block just built")?;
            let bytes = block.encode_to_vec();
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            let hash = block
                .header
                .as_ref()
                .map(gridledger_proto::block_header_hash)
                .unwrap_or_default();
            println!(
                "wrote genesis block of channel '{}' to {} ({} bytes, header hash {})",
                spec.name,
                out.display(),
                bytes.len(),
                hex::encode(hash)
            );
            Ok(())
        }
        ChannelCommand::Inspect { block } => {
            let bytes =
                std::fs::read(&block).with_context(|| format!("reading {}", block.display()))?;
            let decoded = common::Block::decode(bytes.as_slice())
                .with_context(|| format!("{} is not a protobuf common.Block", block.display()))?;
            let config = ChannelConfig::from_block(&decoded)
                .with_context(|| format!("reading the channel config in {}", block.display()))?;
            crate::print_out(&describe(&decoded, &config))?;
            Ok(())
        }
    }
}

/// A readable summary of a config block.
fn describe(block: &common::Block, config: &ChannelConfig) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let number = block.header.as_ref().map_or(0, |h| h.number);
    let hash = block
        .header
        .as_ref()
        .map(gridledger_proto::block_header_hash)
        .unwrap_or_default();
    let _ = writeln!(out, "channel:       {}", config.channel_id());
    let _ = writeln!(
        out,
        "block:         {number} (header hash {})",
        hex::encode(hash)
    );
    let _ = writeln!(out, "sequence:      {}", config.sequence());
    let _ = writeln!(out, "capabilities:  {}", config.capabilities().join(", "));
    let orderer = config.orderer();
    let _ = writeln!(
        out,
        "orderer:       {} ({:?}), capabilities {}",
        orderer.consensus_type,
        orderer.state,
        orderer.capabilities.join(", ")
    );
    let b = orderer.batch;
    let _ = writeln!(
        out,
        "  batch:       max_message_count {}, absolute_max_bytes {}, preferred_max_bytes {}, batch_timeout_ms {}",
        b.max_message_count, b.absolute_max_bytes, b.preferred_max_bytes, b.batch_timeout_ms
    );
    for c in &orderer.consenters {
        let _ = writeln!(out, "  consenter:   {}:{}", c.host, c.port);
    }
    for org in &orderer.organizations {
        let _ = writeln!(
            out,
            "  org:         {} endpoints [{}]",
            org.msp_id,
            org.endpoints.join(", ")
        );
    }
    let app = config.application();
    let _ = writeln!(
        out,
        "application:   capabilities {}",
        app.capabilities.join(", ")
    );
    for org in &app.organizations {
        let anchors: Vec<String> = org
            .anchor_peers
            .iter()
            .map(|a| format!("{}:{}", a.host, a.port))
            .collect();
        let _ = writeln!(
            out,
            "  org:         {} anchor peers [{}]",
            org.msp_id,
            anchors.join(", ")
        );
    }
    let _ = writeln!(out, "policies:");
    for path in config.policies().paths() {
        let rule = config
            .policies()
            .policy(&path)
            .map(render_policy)
            .unwrap_or_default();
        let _ = writeln!(out, "  {path:<48} {rule}");
    }
    out
}

/// A policy in Fabric's text forms: `OR('A.admin', …)` or `MAJORITY Admins`.
pub(crate) fn render_policy(policy: &common::Policy) -> String {
    use common::policy::PolicyType;
    use gridledger_channels::policy::{implicit_meta_to_string, to_policy_string};
    match PolicyType::try_from(policy.r#type) {
        Ok(PolicyType::Signature) => {
            common::SignaturePolicyEnvelope::decode(policy.value.as_slice())
                .map_err(|e| e.to_string())
                .and_then(|env| to_policy_string(&env).map_err(|e| e.to_string()))
                .unwrap_or_else(|e| format!("<signature policy: {e}>"))
        }
        Ok(PolicyType::ImplicitMeta) => common::ImplicitMetaPolicy::decode(policy.value.as_slice())
            .map(|p| implicit_meta_to_string(&p))
            .unwrap_or_else(|e| format!("<implicit-meta policy: {e}>")),
        _ => format!("<policy type {}>", policy.r#type),
    }
}
