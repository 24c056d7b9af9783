//! Shared by the simulator's test binaries.

use capture_sim::{Env, Options, RangeReport, StoreKind, run_range};

/// Runs `seeds` and fails with every broken invariant and its replay command.
pub fn assert_range_green(store: StoreKind, seeds: std::ops::Range<u64>) -> RangeReport {
    let env = Env::new(store).unwrap_or_else(|e| panic!("{e}"));
    let opts = Options { store, platform: None, verbose: false };
    let report = run_range(&env, seeds.clone(), &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.histories, seeds.end - seeds.start);
    let failures: Vec<String> = report
        .failures
        .iter()
        .map(|(seed, v)| format!("seed {seed}: {}\n  replay: {}", v.join("\n  "), opts.replay_command(*seed)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} histories broke an invariant:\n{}",
        failures.len(),
        report.histories,
        failures.join("\n")
    );
    println!(
        "{} histories, every invariant held; faults injected:\n{}",
        report.histories,
        report.counts.table()
    );
    report
}
