//! `gridledger bench …`: micro-benchmarks whose results are reported in BENCHMARKS.md.

use clap::Subcommand;
use gridledger_identity::bench::{Corpus, Measurement, Verifier};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// ECDSA P-256 signature verification per second: ring (production) against the p256
    /// crate, on 1 thread and on every core, repeated; prints medians.
    Crypto {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Repetitions of each measurement (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Crypto {
            seconds,
            repeat,
            json,
        } => crypto(seconds, repeat.max(1), json),
    }
}

fn crypto(seconds: f64, repeat: usize, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        seconds > 0.0 && seconds <= 600.0,
        "--seconds must be in (0, 600]"
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let corpus = Corpus::new(1024)?;
    let duration = Duration::from_secs_f64(seconds);
    let mut thread_counts = vec![1];
    if cores > 1 {
        thread_counts.push(cores);
    }
    let mut medians: Vec<Measurement> = Vec::new();
    for &threads in &thread_counts {
        for verifier in [Verifier::Ring, Verifier::P256] {
            // Interleave repetitions is not needed: each run is short and the median absorbs noise.
            let mut runs: Vec<Measurement> = (0..repeat)
                .map(|_| corpus.measure(verifier, threads, duration))
                .collect();
            runs.sort_by(|a, b| a.verifies_per_sec.total_cmp(&b.verifies_per_sec));
            medians.push(runs.swap_remove(repeat / 2));
        }
    }
    let rate = |v: Verifier, t: usize| {
        medians
            .iter()
            .find(|m| m.verifier == v && m.threads == t)
            .map(|m| m.verifies_per_sec)
            .unwrap_or(0.0)
    };
    if json {
        let out = serde_json::json!({
            "cores": cores,
            "seconds_per_run": seconds,
            "repeat": repeat,
            "medians": medians,
            "ring_over_p256_1_thread": rate(Verifier::Ring, 1) / rate(Verifier::P256, 1).max(1e-9),
        });
        println!("{out}");
    } else {
        println!("ECDSA P-256 verify, median of {repeat} runs of {seconds} s ({cores} cores)");
        println!(
            "{:<8} {:>8} {:>14} {:>14}",
            "verifier", "threads", "verifies/s", "µs/verify/core"
        );
        for m in &medians {
            let per_core_us = 1e6 * m.threads as f64 / m.verifies_per_sec.max(1e-9);
            println!(
                "{:<8} {:>8} {:>14.0} {:>14.1}",
                format!("{:?}", m.verifier).to_lowercase(),
                m.threads,
                m.verifies_per_sec,
                per_core_us
            );
        }
        println!(
            "ring / p256 on 1 thread: {:.2}x",
            rate(Verifier::Ring, 1) / rate(Verifier::P256, 1).max(1e-9)
        );
    }
    Ok(())
}
