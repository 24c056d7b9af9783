//! The SQLite backend: one file, WAL journal, `BEGIN IMMEDIATE` for every write.
//!
//! rusqlite is blocking, so every call runs on `tokio::task::spawn_blocking` with the one
//! connection behind a `std::sync::Mutex` (calls of one process are serialized there; other
//! processes are serialized by SQLite's write lock, waited for up to [`BUSY_TIMEOUT`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capture_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::logic::{
    self, COLUMNS, LeasePlan, NCOLUMNS, ORDER_COLUMNS, Plan, RawOrder, RawRow, Stored, UNRESOLVED_STATES,
};
use crate::{
    Attempt, AttemptState, AttemptUpdate, CaptureStore, Fence, LeaseGrant, NewAttempt, OrderRecord,
    Reservation, StoreError,
};

/// How long a write waits for another process's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS capture_store_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS capture_orders (
    merchant            TEXT    NOT NULL,
    platform            TEXT    NOT NULL,
    order_id            TEXT    NOT NULL,
    currency            TEXT    NOT NULL,
    authorized_minor    INTEGER NOT NULL CHECK (authorized_minor >= 0),
    payments            TEXT    NOT NULL,
    external_minor      INTEGER NOT NULL CHECK (external_minor >= 0),
    held_minor          INTEGER NOT NULL CHECK (held_minor >= 0),
    in_flight           TEXT,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (merchant, platform, order_id)
);
CREATE TABLE IF NOT EXISTS capture_attempts (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT    NOT NULL UNIQUE,
    merchant            TEXT    NOT NULL,
    platform            TEXT    NOT NULL,
    idempotency_key     TEXT    NOT NULL,
    fingerprint         TEXT    NOT NULL,
    order_id            TEXT    NOT NULL,
    payment_ids         TEXT    NOT NULL,
    amount_minor        INTEGER NOT NULL CHECK (amount_minor > 0),
    currency            TEXT    NOT NULL,
    state               TEXT    NOT NULL CHECK (state IN
                            ('reserved','sent','captured','pending','failed','unknown','already_captured')),
    resendable          INTEGER NOT NULL DEFAULT 0 CHECK (resendable IN (0, 1)),
    captured_minor      INTEGER,
    anomaly             TEXT,
    platform_capture_id TEXT,
    request             TEXT,
    response            TEXT,
    outcome             TEXT,
    sends               INTEGER NOT NULL DEFAULT 0 CHECK (sends >= 0),
    last_sent_at        INTEGER,
    lease_owner         TEXT,
    lease_token         INTEGER NOT NULL CHECK (lease_token >= 0),
    lease_at            INTEGER NOT NULL,
    lease_until         INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (merchant, platform, idempotency_key)
);
CREATE INDEX IF NOT EXISTS capture_attempts_order ON capture_attempts (merchant, platform, order_id);
CREATE INDEX IF NOT EXISTS capture_attempts_state ON capture_attempts (state);
";

/// The ledger in a SQLite file (or in memory, for tests).
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    target: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("target", &self.target).finish_non_exhaustive()
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(format!("sqlite: {e}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the ledger file: WAL journal, `synchronous=FULL` (a committed
    /// capture survives a power loss), waiting up to 10 s for another process's write lock, the
    /// schema created if missing.
    /// Blocking: call it from `spawn_blocking` in async code (as [`crate::open`] does).
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let target = path.display().to_string();
        let fail = |message: String| StoreError::Open { target: target.clone(), message };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("creating {}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        conn.busy_handler(Some(busy_wait)).map_err(|e| fail(e.to_string()))?;
        // Switching to WAL needs a moment of exclusive access: another process opening the same
        // file at once can make it report SQLITE_BUSY despite the busy timeout; try again briefly.
        let mut mode = String::new();
        for attempt in 0..50 {
            match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
                Ok(m) => {
                    mode = m;
                    break;
                }
                Err(e) if attempt < 49 && is_busy(&e) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(fail(format!("setting WAL: {e}"))),
            }
        }
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(format!("the journal mode is `{mode}`, WAL could not be enabled")));
        }
        Self::init(conn, target)
    }

    /// A private in-memory ledger (tests, demos). Nothing is durable.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory()
            .map_err(|e| StoreError::Open { target: ":memory:".into(), message: e.to_string() })?;
        Self::init(conn, ":memory:".into())
    }

    fn init(mut conn: Connection, target: String) -> Result<SqliteStore, StoreError> {
        let fail = |message: String| StoreError::Open { target: target.clone(), message };
        conn.pragma_update(None, "synchronous", "FULL").map_err(|e| fail(e.to_string()))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(e.to_string()))?;
        tx.execute_batch(SCHEMA).map_err(|e| fail(format!("creating the schema: {e}")))?;
        let version: Option<i64> = tx
            .query_row("SELECT MAX(version) FROM capture_store_schema", [], |r| r.get(0))
            .map_err(|e| fail(e.to_string()))?;
        match version {
            None => {
                tx.execute("INSERT INTO capture_store_schema (version) VALUES (?1)", [SCHEMA_VERSION])
                    .map_err(|e| fail(e.to_string()))?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(fail(format!(
                    "the ledger has schema version {v}, this build knows up to {SCHEMA_VERSION}: upgrade the engine"
                )));
            }
            Some(v) if v < SCHEMA_VERSION => {
                return Err(fail(format!(
                    "the ledger has schema version {v}, written by an older engine; this build writes \
                     {SCHEMA_VERSION} (orders with their authorization, leases): resolve its open attempts \
                     with the older engine (`capture reconcile`) and start a new ledger file"
                )));
            }
            Some(_) => {}
        }
        tx.commit().map_err(|e| fail(e.to_string()))?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), target })
    }

    /// The file this store was opened on (`:memory:` for [`SqliteStore::in_memory`]).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.target)
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves no transaction open (rusqlite rolls back on
            // drop), so a poisoned lock still guards a usable connection.
            let mut guard = conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Database(format!("sqlite task: {e}")))?
    }
}

/// The busy handler: polls the lock every millisecond for up to [`BUSY_TIMEOUT`]. SQLite's own
/// (`busy_timeout`) backs off to 100 ms sleeps, so a process waiting for the write lock keeps
/// losing it to one that writes in a loop; polling often gives every process its turn.
fn busy_wait(tries: i32) -> bool {
    const STEP: Duration = Duration::from_millis(1);
    let limit = i32::try_from(BUSY_TIMEOUT.as_millis() / STEP.as_millis()).unwrap_or(i32::MAX);
    if tries >= limit {
        return false;
    }
    std::thread::sleep(STEP);
    true
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn raw(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: row.get(0)?,
        merchant: row.get(1)?,
        platform: row.get(2)?,
        idempotency_key: row.get(3)?,
        fingerprint: row.get(4)?,
        order_id: row.get(5)?,
        payment_ids: row.get(6)?,
        amount_minor: row.get(7)?,
        currency: row.get(8)?,
        state: row.get(9)?,
        resendable: row.get(10)?,
        captured_minor: row.get(11)?,
        anomaly: row.get(12)?,
        platform_capture_id: row.get(13)?,
        request: row.get(14)?,
        response: row.get(15)?,
        outcome: row.get(16)?,
        sends: row.get(17)?,
        last_sent_at: row.get(18)?,
        lease_owner: row.get(19)?,
        lease_token: row.get(20)?,
        lease_at: row.get(21)?,
        lease_until: row.get(22)?,
        created_at: row.get(23)?,
        updated_at: row.get(24)?,
    })
}

fn raw_order(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawOrder> {
    Ok(RawOrder {
        merchant: row.get(0)?,
        platform: row.get(1)?,
        order_id: row.get(2)?,
        currency: row.get(3)?,
        authorized_minor: row.get(4)?,
        payments: row.get(5)?,
        external_minor: row.get(6)?,
        held_minor: row.get(7)?,
        in_flight: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

fn select_one(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Option<Stored>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM capture_attempts WHERE {filter}");
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    stmt.query_row(args, raw).optional().map_err(db)?.map(RawRow::decode).transpose()
}

fn select_many(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Stored>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM capture_attempts WHERE {filter} ORDER BY created_at, seq");
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt.query_map(args, raw).map_err(db)?;
    rows.map(|r| r.map_err(db).and_then(RawRow::decode)).collect()
}

fn order_rows(
    conn: &Connection,
    merchant: &str,
    platform: &str,
    order: &str,
) -> Result<Vec<Stored>, StoreError> {
    select_many(conn, "merchant = ?1 AND platform = ?2 AND order_id = ?3", params![merchant, platform, order])
}

fn select_order(
    conn: &Connection,
    merchant: &str,
    platform: &str,
    order: &str,
) -> Result<Option<OrderRecord>, StoreError> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM capture_orders WHERE merchant = ?1 AND platform = ?2 AND order_id = ?3"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    stmt.query_row(params![merchant, platform, order], raw_order)
        .optional()
        .map_err(db)?
        .map(RawOrder::decode)
        .transpose()
}

fn write_order(conn: &Connection, order: &OrderRecord, now: Timestamp) -> Result<(), StoreError> {
    let r = RawOrder::encode(order, now)?;
    let sql = format!(
        "INSERT INTO capture_orders ({ORDER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (merchant, platform, order_id) DO UPDATE SET external_minor = excluded.external_minor, \
         held_minor = excluded.held_minor, in_flight = excluded.in_flight, updated_at = excluded.updated_at"
    );
    conn.prepare_cached(&sql)
        .map_err(db)?
        .execute(params![
            r.merchant,
            r.platform,
            r.order_id,
            r.currency,
            r.authorized_minor,
            r.payments,
            r.external_minor,
            r.held_minor,
            r.in_flight,
            r.updated_at
        ])
        .map_err(db)?;
    Ok(())
}

fn reserve_blocking(conn: &mut Connection, new: &NewAttempt) -> Result<Reservation, StoreError> {
    logic::validate(new)?;
    // IMMEDIATE takes SQLite's write lock now, so the reads below and the writes are one
    // serialized step for every connection to this file, in any process.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
    let by_key = select_one(
        &tx,
        "merchant = ?1 AND platform = ?2 AND idempotency_key = ?3",
        params![new.merchant, new.platform, new.idempotency_key],
    )?;
    let id_owner: Option<String> = tx
        .prepare_cached("SELECT idempotency_key FROM capture_attempts WHERE id = ?1")
        .map_err(db)?
        .query_row([&new.id], |r| r.get(0))
        .optional()
        .map_err(db)?;
    let order = select_order(&tx, &new.merchant, &new.platform, &new.order_id)?
        .unwrap_or_else(|| logic::first_order(new));
    let busy = match &order.in_flight {
        Some(id) => select_one(&tx, "id = ?1", [id])?,
        None => None,
    };
    match logic::plan_reserve(new, by_key, id_owner, order, busy)? {
        Plan::Answer(answer) => Ok(answer),
        Plan::Insert { attempt, order } => {
            insert(&tx, &attempt)?;
            write_order(&tx, &order, new.now)?;
            tx.commit().map_err(db)?;
            Ok(Reservation::Reserved(attempt.attempt))
        }
    }
}

fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
}

fn insert(conn: &Connection, stored: &Stored) -> Result<(), StoreError> {
    let r = RawRow::encode(stored)?;
    let sql = format!("INSERT INTO capture_attempts ({COLUMNS}) VALUES ({})", placeholders(NCOLUMNS));
    conn.prepare_cached(&sql)
        .map_err(db)?
        .execute(params![
            r.id,
            r.merchant,
            r.platform,
            r.idempotency_key,
            r.fingerprint,
            r.order_id,
            r.payment_ids,
            r.amount_minor,
            r.currency,
            r.state,
            r.resendable,
            r.captured_minor,
            r.anomaly,
            r.platform_capture_id,
            r.request,
            r.response,
            r.outcome,
            r.sends,
            r.last_sent_at,
            r.lease_owner,
            r.lease_token,
            r.lease_at,
            r.lease_until,
            r.created_at,
            r.updated_at
        ])
        .map_err(db)?;
    Ok(())
}

/// Writes every mutable column of an attempt.
fn update(conn: &Connection, stored: &Stored) -> Result<(), StoreError> {
    let r = RawRow::encode(stored)?;
    let changed = conn
        .prepare_cached(
            "UPDATE capture_attempts SET state = ?2, resendable = ?3, captured_minor = ?4, anomaly = ?5, \
             platform_capture_id = ?6, request = ?7, response = ?8, outcome = ?9, sends = ?10, \
             last_sent_at = ?11, lease_owner = ?12, lease_token = ?13, lease_at = ?14, lease_until = ?15, \
             updated_at = ?16 WHERE id = ?1",
        )
        .map_err(db)?
        .execute(params![
            r.id,
            r.state,
            r.resendable,
            r.captured_minor,
            r.anomaly,
            r.platform_capture_id,
            r.request,
            r.response,
            r.outcome,
            r.sends,
            r.last_sent_at,
            r.lease_owner,
            r.lease_token,
            r.lease_at,
            r.lease_until,
            r.updated_at
        ])
        .map_err(db)?;
    if changed != 1 {
        return Err(StoreError::Database(format!("sqlite: updating {} changed {changed} rows", r.id)));
    }
    Ok(())
}

fn transition_blocking(
    conn: &mut Connection,
    id: &str,
    fence: &Fence,
    from: &[AttemptState],
    to: AttemptState,
    upd: AttemptUpdate,
    now: Timestamp,
) -> Result<Attempt, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
    let current = select_one(&tx, "id = ?1", [id])?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    let a = &current.attempt;
    let order = select_order(&tx, &a.merchant, &a.platform, &a.order_id)?.ok_or_else(|| {
        StoreError::Corrupt { id: id.to_owned(), message: format!("order {} has no order row", a.order_id) }
    })?;
    let (next, order) = logic::plan_transition(current, order, fence, from, to, upd, now)?;
    update(&tx, &next)?;
    write_order(&tx, &order, now)?;
    tx.commit().map_err(db)?;
    Ok(next.attempt)
}

fn take_lease_blocking(
    conn: &mut Connection,
    id: &str,
    owner: &str,
    lease_ms: u64,
    min_age_ms: Option<u64>,
    now: Timestamp,
) -> Result<LeaseGrant, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
    let current = select_one(&tx, "id = ?1", [id])?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    match logic::plan_take_lease(current, owner, lease_ms, min_age_ms, now)? {
        LeasePlan::Answer(grant) => Ok(grant),
        LeasePlan::Write(next, grant) => {
            update(&tx, &next)?;
            tx.commit().map_err(db)?;
            Ok(grant)
        }
    }
}

fn attempts(rows: Vec<Stored>) -> Vec<Attempt> {
    rows.into_iter().map(|s| s.attempt).collect()
}

#[async_trait::async_trait]
impl CaptureStore for SqliteStore {
    async fn reserve(&self, new: &NewAttempt) -> Result<Reservation, StoreError> {
        let new = new.clone();
        self.with(move |c| reserve_blocking(c, &new)).await
    }

    async fn transition(
        &self,
        id: &str,
        fence: &Fence,
        from: &[AttemptState],
        to: AttemptState,
        update: AttemptUpdate,
        now: Timestamp,
    ) -> Result<Attempt, StoreError> {
        let (id, fence, from) = (id.to_owned(), fence.clone(), from.to_vec());
        self.with(move |c| transition_blocking(c, &id, &fence, &from, to, update, now)).await
    }

    async fn take_lease(
        &self,
        id: &str,
        owner: &str,
        lease_ms: u64,
        min_age_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<LeaseGrant, StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.with(move |c| take_lease_blocking(c, &id, &owner, lease_ms, min_age_ms, now)).await
    }

    async fn get(&self, id: &str) -> Result<Option<Attempt>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| Ok(select_one(c, "id = ?1", [id])?.map(|s| s.attempt))).await
    }

    async fn by_key(&self, merchant: &str, platform: &str, key: &str) -> Result<Option<Attempt>, StoreError> {
        let (m, p, k) = (merchant.to_owned(), platform.to_owned(), key.to_owned());
        self.with(move |c| {
            let found =
                select_one(c, "merchant = ?1 AND platform = ?2 AND idempotency_key = ?3", params![m, p, k])?;
            Ok(found.map(|s| s.attempt))
        })
        .await
    }

    async fn order(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        let (m, p, o) = (merchant.to_owned(), platform.to_owned(), order_id.to_owned());
        self.with(move |c| select_order(c, &m, &p, &o)).await
    }

    async fn unresolved(&self) -> Result<Vec<Attempt>, StoreError> {
        self.with(|c| {
            let [a, b, d, e] = UNRESOLVED_STATES.map(AttemptState::as_str);
            Ok(attempts(select_many(c, "state IN (?1, ?2, ?3, ?4)", params![a, b, d, e])?))
        })
        .await
    }

    async fn order_attempts(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Vec<Attempt>, StoreError> {
        let (m, p, o) = (merchant.to_owned(), platform.to_owned(), order_id.to_owned());
        self.with(move |c| Ok(attempts(order_rows(c, &m, &p, &o)?))).await
    }

    async fn all(&self) -> Result<Vec<Attempt>, StoreError> {
        self.with(|c| Ok(attempts(select_many(c, "1 = 1", [])?))).await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
