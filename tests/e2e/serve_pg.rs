//! Three `capture serve` processes on one PostgreSQL ledger: a batch of captures spread over
//! them, one SIGKILLed mid-batch and restarted, the client retrying what went unanswered with
//! the same idempotency keys; then the emulator's books against the ledger: no capture twice,
//! none lost, none over the authorized amount.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capture_engine::AttemptState;
use capture_sandbox::OpttyOrder;
use capture_sandbox::faults::Fault;
use rust_decimal::Decimal;

use crate::emulator;
use crate::plugins::scratch;
use crate::serve::{API_TOKEN, Server, config, try_http};

const ORDERS: usize = 36;

fn request(i: usize) -> String {
    let order = format!("S-{i:03}");
    format!(
        r#"{{"platform":"optty","idempotency_key":"{order}-1","amount":"full","order":{{"id":"{order}","currency":"USD","amount":"10.00","payments":[{{"id":"pay-{order}","amount":"10.00","method":"afterpay"}}]}}}}"#
    )
}

/// Posts request `i` to the server at `addr`: `Some(outcome status)` when answered 200 or 202.
async fn post(addr: SocketAddr, i: usize) -> Option<String> {
    let a = try_http(addr, "POST", "/v1/captures", Some(API_TOKEN), request(i).as_bytes()).await.ok()?;
    if a.status == 200 || a.status == 202 {
        let v: serde_json::Value = serde_json::from_str(&a.body).ok()?;
        return v["outcome"]["status"].as_str().map(str::to_owned);
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_one_postgres_ledger_one_killed_mid_batch_capture_each_order_once() {
    let url = capture_store::testing::throwaway_postgres().await.unwrap_or_else(|e| panic!("{e}"));
    let emu = emulator().await;
    let ten = Decimal::new(1000, 2);
    for i in 0..ORDERS {
        emu.add_order(OpttyOrder::new(format!("S-{i:03}"), "USD", ten, Decimal::ZERO, "afterpay"));
    }
    // Every capture is applied, then answered 150 ms late: captures are in flight when the kill comes.
    emu.faults().push((0..ORDERS).map(|_| Fault::delay(150)));
    let dir = scratch("serve-pg");
    let cfg = config(&dir, &emu.base_url(), Some(&url));
    let mut servers: Vec<Server> = (0..3).map(|_| Server::start(&cfg, &[])).collect();
    let addrs = Arc::new(Mutex::new(servers.iter().map(|s| s.addr).collect::<Vec<_>>()));

    // Pass 1: six clients, each request to the next server in turn.
    let done: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; ORDERS]));
    let answered = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (addrs, done, answered, next) = (addrs.clone(), done.clone(), answered.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= ORDERS {
                    break;
                }
                let addr = addrs.lock().expect("addrs")[i % 3];
                let outcome = post(addr, i).await;
                if outcome.is_some() {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                done.lock().expect("done")[i] = outcome;
            }
        }));
    }
    // Mid-batch: SIGKILL the first server (captures of it in flight), then start it again.
    while answered.load(Ordering::SeqCst) < 9 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = &mut servers[0];
    victim.child.kill().expect("SIGKILL a server");
    assert!(victim.child.wait().expect("reap").code().is_none(), "killed by a signal");
    servers[0] = Server::start(&cfg, &[]);
    addrs.lock().expect("addrs")[0] = servers[0].addr;
    for c in clients {
        c.await.expect("client");
    }
    emu.faults().clear();
    let unanswered = done.lock().expect("done").iter().filter(|d| d.is_none()).count();

    // The operator reconciles on the restarted server; the client retries what went
    // unanswered (or was busy, or unknown) with the same keys, on any server.
    let rec =
        try_http(servers[0].addr, "POST", "/v1/reconcile", Some(API_TOKEN), br#"{"abandoned_after_s":0}"#)
            .await
            .expect("reconcile");
    assert_eq!(rec.status, 200, "{rec:?}");
    for round in 0..50 {
        let missing: Vec<usize> =
            (0..ORDERS).filter(|i| done.lock().expect("done")[*i].as_deref() != Some("captured")).collect();
        if missing.is_empty() {
            break;
        }
        assert!(round < 49, "still not captured after retries: {missing:?}");
        for i in missing {
            let addr = servers[(i + round) % 3].addr;
            let outcome = post(addr, i).await;
            done.lock().expect("done")[i] = outcome;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The books against the ledger.
    let attempts = capture_engine::store::open(&url).await.expect("ledger").all().await.expect("read");
    assert_eq!(attempts.len(), ORDERS, "one attempt per key");
    let mut total = Decimal::ZERO;
    for i in 0..ORDERS {
        let order = format!("S-{i:03}");
        let books = emu.captures(&order);
        assert_eq!(books.len(), 1, "{order}: captured exactly once, not {}", books.len());
        assert!(books[0].amount <= ten, "{order}: never over the authorized amount");
        let a = attempts.iter().find(|a| a.order_id == order).expect("an attempt per order");
        assert_eq!(a.state, AttemptState::Captured, "{order}");
        assert_eq!(a.amount.amount(), books[0].amount, "{order}: the ledger and the books agree");
        total += books[0].amount;
    }
    assert_eq!(total, Decimal::from(ORDERS as u64) * ten);
    println!(
        "serve on postgres: {ORDERS} captures over 3 processes, one killed; {unanswered} unanswered in the first pass"
    );
}
