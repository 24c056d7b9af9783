//! Every seed that broke an invariant while the simulator was built, named after what it found
//! (see crates/sim/README.md, "Defects found on the old code"). Each must replay clean.

use capture_sim::{Env, Options, StoreKind, run_history};

fn assert_clean(seed: u64) {
    let env = Env::new(StoreKind::Sqlite).unwrap_or_else(|e| panic!("{e}"));
    let opts = Options::sqlite();
    let report = run_history(&env, seed, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.violations.is_empty(),
        "seed {seed} broke an invariant (replay: {}):\n{}",
        opts.replay_command(seed),
        report.violations.join("\n")
    );
}

/// Defect 1: a reconcile (abandoned after 0 s) resends an attempt another process is sending;
/// its refused compare-and-set is ignored and it records its own refusal over the capture:
/// the platform holds the capture, the ledger says failed. No fault injected at all.
#[test]
fn seed_2379_concurrent_reconcile_overwrites_an_in_flight_capture_with_failed() {
    assert_clean(2379);
}

/// Defect 1, after a crash: the restarted process's reconcile loses a capture the crashed one
/// made (sent -> unknown refused, resend refused, then "failed").
#[test]
fn seed_59_reconcile_after_a_crash_loses_the_capture() {
    assert_clean(59);
}

/// Defect 2: Optty applied the capture and the network delivered the request twice; the engine
/// records "captureReference already used" as already_captured although this very key captured.
#[test]
fn seed_205_own_capture_recorded_as_already_captured() {
    assert_clean(205);
}

/// Defect 2: a 5xx after the platform applied (Optty), then the retry learns "already used":
/// already_captured, which does not count as this attempt's capture.
#[test]
fn seed_75_5xx_applied_then_already_captured() {
    assert_clean(75);
}

/// Defect 2: a timeout then a 5xx after apply on the permissive platform: the ledger says
/// failed (platform_unavailable, resendable) while the platform holds the capture.
#[test]
fn seed_1029_5xx_applied_recorded_as_failed() {
    assert_clean(1029);
}

/// Defect 2: Optty, a timeout then a 5xx after apply: the ledger forgets the capture (failed).
#[test]
fn seed_600_optty_5xx_applied_recorded_as_failed() {
    assert_clean(600);
}

/// Defect 3: the bound follows the snapshot: payments ten times the order amount on the
/// permissive platform, 1395.00 captured of 139.50 authorized. No fault injected.
#[test]
fn seed_154_inconsistent_snapshot_captures_ten_times_the_authorization() {
    assert_clean(154);
}

/// Defect 3 on a full-capture platform: Medusa captured its 66.00, the ledger holds 264.00
/// because the snapshot's payment was four times larger.
#[test]
fn seed_42_snapshot_bound_on_medusa() {
    assert_clean(42);
}

/// Defect 4: Optty answered a different captured amount than asked; the ledger keeps the asked
/// amount, nothing says they differ.
#[test]
fn seed_1390_amount_mismatch_accepted_silently() {
    assert_clean(1390);
}

/// Defect 4: a snapshot 2.54 below the authorization; Wix captured the whole payment (161.00),
/// the ledger keeps 158.46.
#[test]
fn seed_23_wix_captured_more_than_the_ledger_records() {
    assert_clean(23);
}

/// Defect 5: a reservation stamped 16 hours in the future by a process whose clock jumped,
/// then the process died: never released, reconcile reports nothing unresolved.
#[test]
fn seed_388_future_reservation_blocks_the_order_forever() {
    assert_clean(388);
}

/// Defect 5, with a restart that dies too.
#[test]
fn seed_2169_future_reservation_after_two_crashes() {
    assert_clean(2169);
}

/// Defect 6: the reserved -> failed transition after a slow answer fails and is dropped (`let
/// _ =`): the report says pending and names no error.
#[test]
fn seed_2148_swallowed_transition_error() {
    assert_clean(2148);
}

/// Defect 6: a failed reserved -> failed transition swallowed, the report says captured.
#[test]
fn seed_2367_swallowed_transition_error_with_a_snapshot_bound() {
    assert_clean(2367);
}

/// Found beyond the issue: Medusa answered 503 without capturing; its status says "not
/// captured yet", read as pending, so the attempt stays pending forever, holding the bound
/// (every later capture of the order is refused as over the bound).
#[test]
fn seed_92_never_applied_capture_stays_pending_forever() {
    assert_clean(92);
}

/// Found beyond the issue: BigCommerce, a crash before the send: the order's transactions show
/// no capture, read as pending forever.
#[test]
fn seed_6_bigcommerce_unsent_capture_pending_forever() {
    assert_clean(6);
}

/// Found beyond the issue: a lagging status read (Wix) that does not list the capture id the
/// platform returned is taken as "not found": failed, while the platform captured.
#[test]
fn seed_143_lagging_status_read_turns_a_capture_into_failed() {
    assert_clean(143);
}

/// Found beyond the issue, with no fault: Wix answers a second capture of a payment with a
/// pending capture 428 PAYMENT_HAS_PENDING_CAPTURE; the connector reports pending, the engine
/// records this attempt pending, and the status query later resolves it with the OTHER
/// attempt's capture: two ledger captures for one platform capture.
#[test]
fn seed_18_wix_pending_capture_counted_for_two_attempts() {
    assert_clean(18);
}

/// Found on ledger v2, with no fault: a BigCommerce status read while the capture is pending
/// reports 0.00 pending; the machine records it as an `amount_mismatch` (captured 0.00), and the
/// later `captured` record (matching amount, no anomaly) leaves both fields as they were: the
/// ledger says the platform captured 0.00 for a capture of 64.50 that settled.
#[test]
fn seed_21_pending_read_leaves_a_stale_captured_amount() {
    assert_clean(21);
}

/// Found on ledger v2: Medusa answered 503 without capturing; the status read says "not captured
/// yet" (Medusa answers that for a payment never captured), read as pending: the attempt stays
/// pending forever, holding its share of the bound; reconcile counts it as "pending at the
/// platform" although the platform has nothing pending.
#[test]
fn seed_822_medusa_never_captured_stays_pending_forever() {
    assert_clean(822);
}

/// Found on ledger v2: a takeover reconcile reads Wix's transactions through a lagging read that
/// does not list the capture yet: `not_found`, recorded as failed (certainly nothing captured),
/// while the platform holds the capture.
#[test]
fn seed_2053_lagging_status_read_records_failed() {
    assert_clean(2053);
}

/// Found on ledger v2: the network delivered BigCommerce's capture twice; the answer that came
/// back is the second one, 422 "already been captured", recorded as a certain failure.
#[test]
fn seed_291_duplicate_delivery_on_bigcommerce_recorded_as_failed() {
    assert_clean(291);
}

/// A process whose clock ran 25 minutes behind stamped its send so early that another process
/// took "not found" for conclusive while the send was in flight. Clocks now stay within the
/// engine's documented skew bound, which the "not found" rule adds to the window.
#[test]
fn seed_552_a_clock_far_behind_made_not_found_conclusive_too_early() {
    assert_clean(552);
}

/// Optty captured another amount than asked and its answer was lost: no engine can learn that
/// amount (Optty has no status read). Accepted by (c) as the one unknowable amount.
#[test]
fn seed_12515_an_amount_no_engine_can_learn() {
    assert_clean(12515);
}
