//! The PostgreSQL range: the same histories over a PostgreSQL ledger (a throwaway server,
//! emptied before every history). Smaller: every store call is a round trip.

mod common;

use capture_sim::{Fault, StoreKind};

#[test]
fn postgres_seeds_0_to_400() {
    let report = common::assert_range_green(StoreKind::Postgres, 0..400);
    for f in [Fault::CrashAfterStoreWrite, Fault::ConcurrentReconcile, Fault::Restart, Fault::LostAnswer] {
        assert!(report.counts.get(f) > 0, "fault {} was never injected", f.name());
    }
}
