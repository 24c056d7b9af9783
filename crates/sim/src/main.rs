//! `capture-sim`: runs seeded histories and reports the faults injected and every broken
//! invariant with the one-line command that replays it.

use std::process::ExitCode;
use std::time::Instant;

use capture_sim::{Env, Options, PlatformKind, StoreKind, run_history};
use clap::Parser;

/// The deterministic simulator of the capture stage (see crates/sim/README.md).
#[derive(Debug, Parser)]
#[command(name = "capture-sim")]
struct Args {
    /// A range of seeds, `A..B` (B excluded).
    #[arg(long, default_value = "0..1000")]
    seeds: String,
    /// One seed (overrides --seeds).
    #[arg(long)]
    seed: Option<u64>,
    /// The ledger: sqlite (in memory) or postgres (a throwaway server).
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// all (the seed picks), or optty, bigcommerce, medusa, wix, permissive.
    #[arg(long, default_value = "all")]
    platform: String,
    /// Print the trace of every history run.
    #[arg(long)]
    verbose: bool,
    /// How many failing seeds to print in full (the rest are listed).
    #[arg(long, default_value_t = 3)]
    show: usize,
    /// List every broken invariant of every failing seed (one line each, no trace).
    #[arg(long)]
    all_violations: bool,
}

fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("--seeds `{s}`: expected A..B"))?;
    let a: u64 = a.trim().parse().map_err(|e| format!("--seeds `{s}`: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("--seeds `{s}`: {e}"))?;
    if b < a {
        return Err(format!("--seeds `{s}`: the end is before the start"));
    }
    Ok(a..b)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("capture-sim: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let store = match args.store.as_str() {
        "sqlite" => StoreKind::Sqlite,
        "postgres" => StoreKind::Postgres,
        other => return Err(format!("--store `{other}`: sqlite or postgres")),
    };
    let platform = match args.platform.as_str() {
        "all" => None,
        p => Some(PlatformKind::parse(p).ok_or_else(|| {
            format!("--platform `{p}`: all, optty, bigcommerce, medusa, wix or permissive")
        })?),
    };
    let seeds = match args.seed {
        Some(s) => s..s + 1,
        None => parse_range(&args.seeds)?,
    };
    let opts = Options { store, platform, verbose: args.verbose };
    let env = Env::new(store)?;
    let started = Instant::now();
    let mut counts = capture_sim::Counts::default();
    let mut failures: Vec<(u64, Vec<String>)> = Vec::new();
    let mut histories = 0u64;
    for seed in seeds.clone() {
        let r = run_history(&env, seed, &opts)?;
        histories += 1;
        counts.merge(&r.counts);
        if args.verbose {
            for line in &r.trace {
                println!("{line}");
            }
        }
        if !r.violations.is_empty() {
            failures.push((seed, r.violations));
        }
    }
    let elapsed = started.elapsed();
    let ms = elapsed.as_millis().max(1);
    let per_s = u128::from(histories) * 1000 / ms;
    println!(
        "capture-sim: {histories} histories (seeds {}..{}, store {}, platform {}) in {}.{:03} s: {per_s} histories/s, {} per minute",
        seeds.start,
        seeds.end,
        args.store,
        args.platform,
        ms / 1000,
        ms % 1000,
        per_s * 60
    );
    println!("faults injected:\n{}", counts.table().trim_end());
    if failures.is_empty() {
        println!("every invariant held");
        return Ok(true);
    }
    println!("{} of {histories} histories broke an invariant", failures.len());
    for (i, (seed, v)) in failures.iter().enumerate() {
        if i < args.show {
            println!("\nseed {seed} FAILED; replay: {}", opts.replay_command(*seed));
            for line in v {
                println!("  {line}");
            }
            if !args.verbose {
                let traced = run_history(&env, *seed, &Options { verbose: true, ..opts.clone() })?;
                println!("  trace:");
                for line in &traced.trace {
                    println!("    {line}");
                }
            }
        } else {
            println!(
                "seed {seed} FAILED: {} (replay: {})",
                v.first().map_or("", String::as_str),
                opts.replay_command(*seed)
            );
        }
    }
    Ok(false)
}
