//! The fixed SQLite range: 20,000 histories (four tests of 5,000, so the test harness can run
//! them on several cores), every invariant must hold, and every fault kind must be injected.

mod common;

use capture_sim::{Fault, StoreKind};

fn chunk(start: u64) {
    let report = common::assert_range_green(StoreKind::Sqlite, start..start + 5_000);
    for f in Fault::ALL {
        assert!(
            report.counts.get(f) > 0,
            "seeds {start}..{}: fault {} was never injected",
            start + 5_000,
            f.name()
        );
    }
}

#[test]
fn sqlite_seeds_0_to_5000() {
    chunk(0);
}

#[test]
fn sqlite_seeds_5000_to_10000() {
    chunk(5_000);
}

#[test]
fn sqlite_seeds_10000_to_15000() {
    chunk(10_000);
}

#[test]
fn sqlite_seeds_15000_to_20000() {
    chunk(15_000);
}
