//! `gridledger`: the one binary of GridLedger.
//!
//! A thin shell: it parses the command line into one of a closed set of commands and hands
//! each to the library crate that does the work. Errors are reported once, here, with the
//! chain of what was being done.

mod bench;
mod chaincode;
mod channel;
mod config_env;
mod crypto;
mod demo;
mod grid;
mod ledger;
mod node;
mod operations;
mod policy;
mod report;
mod up;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// GridLedger — a Fabric-compatible permissioned ledger for electricity systems.
#[derive(Debug, Parser)]
#[command(name = "gridledger", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Crypto material: CAs, node and user identities, TLS certificates.
    #[command(subcommand)]
    Crypto(crypto::CryptoCommand),
    /// Channels: genesis blocks, create and join (orderers and peers), list, config updates.
    #[command(subcommand)]
    Channel(channel::ChannelCommand),
    /// Policies: evaluate one against hypothetical signers, explained.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Chaincode lifecycle: package, install, approve, commit, query, deploy.
    #[command(subcommand)]
    Chaincode(chaincode::ChaincodeCommand),
    /// Start a local consortium (orderer + one peer per member org) and write DIR/network.json.
    Up(up::UpArgs),
    /// Simulate one day of the energy market on the network `up` runs (started if none is),
    /// print a summary and write an HTML report.
    Demo(demo::DemoArgs),
    /// Run a peer.
    #[command(subcommand)]
    Peer(node::PeerCommand),
    /// Run an orderer.
    #[command(subcommand)]
    Orderer(node::OrdererCommand),
    /// Inspect and verify ledgers in Fabric's block format (GridLedger's or Fabric's own).
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// The DSO's grid model: feasibility checks of trades on a feeder.
    #[command(subcommand)]
    Grid(grid::GridCommand),
    /// Micro-benchmarks (results go to BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crypto(cmd) => crypto::run(cmd),
        Command::Channel(cmd) => channel::run(cmd),
        Command::Chaincode(cmd) => chaincode::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Grid(cmd) => grid::run(cmd),
        Command::Up(args) => up::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Ledger(cmd) => ledger::run(cmd),
        Command::Peer(cmd) => node::run_peer(cmd),
        Command::Orderer(cmd) => node::run_orderer(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Library errors often already quote their source in
/// their message; a cause whose text is already present is not repeated.
fn error_chain(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

/// Writes `text` to standard output. When the reader has gone away (`gridledger ledger inspect
/// … | head`), the process ends quietly with status 141, as a Unix tool killed by SIGPIPE
/// would, instead of panicking; any other write error is returned.
pub(crate) fn print_out(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        other => other,
    }
}

/// Seconds since the Unix epoch: the one place the binary reads the wall clock for
/// validation times and certificate windows.
pub(crate) fn now_unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
