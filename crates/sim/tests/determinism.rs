//! A seed is a history: running it twice gives the same trace, faults and verdict.

use capture_sim::{Env, Options, StoreKind, run_history};

#[test]
fn the_same_seed_replays_the_same_history() {
    let env = Env::new(StoreKind::Sqlite).unwrap_or_else(|e| panic!("{e}"));
    let opts = Options { verbose: true, ..Options::sqlite() };
    for seed in [0, 1, 2, 3, 4, 59, 75, 388, 2379] {
        let a = run_history(&env, seed, &opts).unwrap_or_else(|e| panic!("{e}"));
        let b = run_history(&env, seed, &opts).unwrap_or_else(|e| panic!("{e}"));
        assert!(a.trace.len() > 5, "seed {seed}: a trace of {} lines", a.trace.len());
        assert_eq!(a.trace, b.trace, "seed {seed}: two runs differ");
        assert_eq!(a.counts, b.counts, "seed {seed}");
        assert_eq!(a.violations, b.violations, "seed {seed}");
    }
}

#[test]
fn the_trace_does_not_change_the_history() {
    let env = Env::new(StoreKind::Sqlite).unwrap_or_else(|e| panic!("{e}"));
    for seed in 100..140 {
        let quiet = run_history(&env, seed, &Options::sqlite()).unwrap_or_else(|e| panic!("{e}"));
        let traced = run_history(&env, seed, &Options { verbose: true, ..Options::sqlite() })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(quiet.counts, traced.counts, "seed {seed}");
        assert_eq!(quiet.violations, traced.violations, "seed {seed}");
        assert!(quiet.trace.is_empty());
    }
}
