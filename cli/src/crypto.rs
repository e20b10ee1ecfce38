//! `gridledger crypto …`: generate a consortium's crypto material.

use anyhow::Context;
use clap::Subcommand;
use gridledger_identity::material::{self, CryptoConfig};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum CryptoCommand {
    /// Generate CAs and identities for every organization of a crypto config (TOML).
    ///
    /// Writes OUT/organizations/<MSPID>/{ca,tlsca,msp,peers,orderers,users}; see
    /// ARCHITECTURE.md for the layout. With `seed = "…"` in the config the output is
    /// byte-identical between runs.
    Generate {
        /// Crypto config file, e.g. examples/crypto-config.toml.
        #[arg(long)]
        config: PathBuf,
        /// Output folder (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: CryptoCommand) -> anyhow::Result<()> {
    match cmd {
        CryptoCommand::Generate { config, out } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let parsed: CryptoConfig =
                toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
            material::generate(&parsed, &out, crate::now_unix_secs())
                .with_context(|| format!("generating crypto material into {}", out.display()))?;
            let orgs: Vec<&str> = parsed
                .organizations
                .iter()
                .map(|o| o.msp_id.as_str())
                .collect();
            println!(
                "wrote crypto material for {} to {}",
                orgs.join(", "),
                out.join("organizations").display()
            );
            Ok(())
        }
    }
}
