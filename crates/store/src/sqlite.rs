//! The SQLite backend: one file, WAL journal, `synchronous=FULL`, group commit.
//!
//! rusqlite is blocking, so one writer thread per store owns the connection and runs every call
//! (reads too). Calls that arrive while it is busy are run together: the writer takes every call
//! waiting in its queue (up to [`MAX_GROUP`]), opens one `BEGIN IMMEDIATE` transaction, runs each
//! call, commits once and only then answers every call of the group. A call that fails or is
//! refused before it writes leaves nothing to undo (every call reads and plans first, and a
//! failing statement undoes itself); one that fails after writing (a panic, a database error
//! between two statements) rolls the whole transaction back, and the group runs again with each
//! call inside its own `SAVEPOINT`, so that call alone is rolled back. (Savepoints on every call
//! cost the writer thread, the bottleneck under load, about an eighth of its time: every page a
//! call changes is copied into the savepoint's journal first.) So concurrent captures share one
//! commit and one fsync, a call's effects are durable before its answer leaves the store (an
//! outcome is never reported, a request never sent, on a record that could still be lost), and
//! the calls of a group see each other in the order they arrived, exactly as if run one by one.
//! If the commit fails, every call of the group gets the error, reads included. Other processes
//! are serialized by SQLite's write lock, waited for up to [`BUSY_TIMEOUT`].

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
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

/// The most calls one group commit carries.
pub const MAX_GROUP: usize = 256;

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = 2;

/// The schema. `state`'s check is a chain of `=` rather than `IN (…)`: SQLite evaluates an `IN`
/// list of seven constants by building a temporary b-tree of them, on every insert and update
/// (a fifth of a recorded capture's instructions: `CAPTURE_INSTR_CASES=ledger .ci/instructions`,
/// 456.0k before, 373.7k after). Ledger files made with the `IN` form (same constraint) keep it.
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
    state               TEXT    NOT NULL CHECK (state = 'reserved' OR state = 'sent' OR state = 'captured'
                            OR state = 'pending' OR state = 'failed' OR state = 'unknown'
                            OR state = 'already_captured'),
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
    /// The writer thread's queue; the thread ends when the store (the last sender) is dropped.
    calls: mpsc::Sender<Box<dyn Call>>,
    /// Groups committed so far, and groups run again with savepoints.
    counts: Arc<Counts>,
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
        // Every statement the store runs stays prepared (the default keeps 16).
        conn.set_prepared_statement_cache_capacity(64);
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
        let (calls, queue) = mpsc::channel::<Box<dyn Call>>();
        let counts = Arc::new(Counts::default());
        let counted = Arc::clone(&counts);
        std::thread::Builder::new()
            .name("capture-sqlite".into())
            .spawn(move || writer(conn, queue, &counted))
            .map_err(|e| fail(format!("starting the writer thread: {e}")))?;
        Ok(SqliteStore { calls, counts, target })
    }

    /// How many group commits this store has made: with concurrent callers, fewer than calls.
    pub fn commits(&self) -> u64 {
        self.counts.commits.load(Ordering::Relaxed)
    }

    /// How many groups ran a second time, each call in its own savepoint, because one of their
    /// calls failed after writing (see the module docs).
    pub fn reruns(&self) -> u64 {
        self.counts.reruns.load(Ordering::Relaxed)
    }

    /// The file this store was opened on (`:memory:` for [`SqliteStore::in_memory`]).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.target)
    }

    /// Runs `f` on the writer thread, in the next group commit, and answers once that group is
    /// committed.
    ///
    /// `f` may run twice (when another call of its group fails after writing, the group runs
    /// again): it must do nothing but read and write through the connection.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let call = Box::new(Pending { run: f, result: None, answer });
        self.calls
            .send(call)
            .map_err(|_| StoreError::Database("sqlite: the writer thread has stopped".into()))?;
        answered.await.map_err(|_| StoreError::Database("sqlite: the writer thread dropped a call".into()))?
    }
}

/// One call waiting in the writer's queue: run inside the group's transaction, answered after
/// its commit.
trait Call: Send {
    /// Runs the call in the open transaction, inside its own savepoint if `savepoint`. Returns
    /// whether it failed after writing (without a savepoint, its writes cannot be undone alone).
    fn run(&mut self, conn: &Connection, savepoint: bool) -> bool;
    /// Answers the caller: the call's result if the group committed, else the group's error.
    fn answer(self: Box<Self>, committed: Result<(), &str>);
}

struct Pending<T, F> {
    run: F,
    result: Option<Result<T, StoreError>>,
    answer: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Call for Pending<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection, savepoint: bool) -> bool {
        if savepoint {
            self.result = Some(in_savepoint(conn, &self.run));
            return false;
        }
        let before = conn.total_changes();
        let result = guarded(|| (self.run)(conn));
        let wrote_then_failed = result.is_err() && conn.total_changes() != before;
        self.result = Some(result);
        wrote_then_failed
    }

    fn answer(self: Box<Self>, committed: Result<(), &str>) {
        let result = match committed {
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(StoreError::Database("sqlite: the call was not run".into()))),
            Err(message) => Err(StoreError::Database(message.to_owned())),
        };
        // An error here means the caller stopped waiting (its future was dropped): nobody to
        // tell, and the call's effects stand (committed, or failed with the group).
        if let Err(unread) = self.answer.send(result) {
            drop(unread);
        }
    }
}

/// Runs `f` inside a savepoint: released when it succeeds, rolled back to (undoing only this
/// call's writes) when it fails, is refused or panics.
fn in_savepoint<T>(
    conn: &Connection,
    f: impl Fn(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run_cached(conn, "SAVEPOINT capture_call").map_err(db)?;
    let result = guarded(|| f(conn));
    let end = match &result {
        Ok(_) => run_cached(conn, "RELEASE capture_call"),
        Err(_) => run_cached(conn, "ROLLBACK TO capture_call")
            .and_then(|()| run_cached(conn, "RELEASE capture_call")),
    };
    match end {
        Ok(()) => result,
        // The savepoint could not be closed: the group's transaction is in an unknown shape, so
        // fail this call; the commit that follows fails too or carries only what succeeded.
        Err(e) => Err(db(e)),
    }
}

/// Runs a call, a panic caught as its error.
fn guarded<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            Err(StoreError::Database("sqlite: a ledger call panicked; its writes were rolled back".into()))
        }
    }
}

/// Runs a statement without parameters, prepared once per connection (`execute_batch` would
/// parse it again on every call: 4% of a capture's instructions in the throughput bench).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// What the writer thread counts.
#[derive(Debug, Default)]
struct Counts {
    commits: AtomicU64,
    reruns: AtomicU64,
}

/// The writer thread: groups waiting calls into one transaction and one commit.
fn writer(conn: Connection, queue: mpsc::Receiver<Box<dyn Call>>, counts: &Counts) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(call) => group.push(call),
                Err(_) => break,
            }
        }
        let committed = commit_group(&conn, &mut group, counts);
        if committed.is_ok() {
            counts.commits.fetch_add(1, Ordering::Relaxed);
        }
        for call in group {
            call.answer(committed.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
}

fn commit_group(conn: &Connection, group: &mut [Box<dyn Call>], counts: &Counts) -> Result<(), String> {
    // IMMEDIATE takes SQLite's write lock now, so the reads and writes of every call are one
    // serialized step for every connection to this file, in any process.
    let begin =
        || run_cached(conn, "BEGIN IMMEDIATE").map_err(|e| format!("sqlite: beginning a transaction: {e}"));
    begin()?;
    // Every call runs (the ones after a tainted call too: `|` does not short-circuit), then the
    // group runs again with savepoints if one of them failed after writing.
    let tainted = group.iter_mut().fold(false, |tainted, call| call.run(conn, false) | tainted);
    if tainted {
        counts.reruns.fetch_add(1, Ordering::Relaxed);
        run_cached(conn, "ROLLBACK")
            .map_err(|e| format!("sqlite: rolling back a group to run it again: {e}"))?;
        begin()?;
        for call in group.iter_mut() {
            call.run(conn, true);
        }
    }
    match run_cached(conn, "COMMIT") {
        Ok(()) => Ok(()),
        Err(e) => {
            let error = format!("sqlite: committing a group of {} calls: {e}", group.len());
            // A failed commit may leave the transaction open (SQLITE_BUSY) or rolled back (an I/O
            // error): end it either way, so the next group starts clean.
            if !conn.is_autocommit() {
                // A failed ROLLBACK adds nothing: the error below already fails every call, and
                // the next group's BEGIN fails (and fails its calls) while a transaction is open.
                if let Err(also) = conn.execute_batch("ROLLBACK") {
                    drop(also);
                }
            }
            Err(error)
        }
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
    raw_order_at(row, 0)
}

/// The order's columns from column `at` on.
fn raw_order_at(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RawOrder> {
    Ok(RawOrder {
        merchant: row.get(at)?,
        platform: row.get(at + 1)?,
        order_id: row.get(at + 2)?,
        currency: row.get(at + 3)?,
        authorized_minor: row.get(at + 4)?,
        payments: row.get(at + 5)?,
        external_minor: row.get(at + 6)?,
        held_minor: row.get(at + 7)?,
        in_flight: row.get(at + 8)?,
        updated_at: row.get(at + 9)?,
    })
}

/// Which attempts a SELECT reads.
#[derive(Clone, Copy)]
enum Filter {
    Id,
    Key,
    Order,
    Unresolved,
    All,
}

impl Filter {
    fn clause(self) -> &'static str {
        match self {
            Filter::Id => "id = ?1",
            Filter::Key => "merchant = ?1 AND platform = ?2 AND idempotency_key = ?3",
            Filter::Order => "merchant = ?1 AND platform = ?2 AND order_id = ?3",
            Filter::Unresolved => "state IN (?1, ?2, ?3, ?4)",
            Filter::All => "1 = 1",
        }
    }
}

/// The SELECT of attempts by `filter` (ordered oldest first when `many`), built once per process:
/// formatting it per call, and hashing a fresh string for the statement cache, was a tenth of a
/// ledger write's instructions.
fn select_sql(filter: Filter, many: bool) -> &'static str {
    static SQL: [OnceLock<String>; 10] = [const { OnceLock::new() }; 10];
    SQL[filter as usize * 2 + usize::from(many)].get_or_init(|| {
        let order = if many { " ORDER BY created_at, seq" } else { "" };
        format!("SELECT {COLUMNS} FROM capture_attempts WHERE {}{order}", filter.clause())
    })
}

fn select_one(
    conn: &Connection,
    filter: Filter,
    args: impl rusqlite::Params,
) -> Result<Option<Stored>, StoreError> {
    let mut stmt = conn.prepare_cached(select_sql(filter, false)).map_err(db)?;
    stmt.query_row(args, raw).optional().map_err(db)?.map(RawRow::decode).transpose()
}

fn select_many(
    conn: &Connection,
    filter: Filter,
    args: impl rusqlite::Params,
) -> Result<Vec<Stored>, StoreError> {
    let mut stmt = conn.prepare_cached(select_sql(filter, true)).map_err(db)?;
    let rows = stmt.query_map(args, raw).map_err(db)?;
    rows.map(|r| r.map_err(db).and_then(RawRow::decode)).collect()
}

fn order_rows(
    conn: &Connection,
    merchant: &str,
    platform: &str,
    order: &str,
) -> Result<Vec<Stored>, StoreError> {
    select_many(conn, Filter::Order, params![merchant, platform, order])
}

fn select_order(
    conn: &Connection,
    merchant: &str,
    platform: &str,
    order: &str,
) -> Result<Option<OrderRecord>, StoreError> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!("SELECT {ORDER_COLUMNS} FROM capture_orders WHERE merchant = ?1 AND platform = ?2 AND order_id = ?3")
    });
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    stmt.query_row(params![merchant, platform, order], raw_order)
        .optional()
        .map_err(db)?
        .map(RawOrder::decode)
        .transpose()
}

/// An attempt and its order row (`None` if the row is missing), in one statement.
fn select_with_order(
    conn: &Connection,
    id: &str,
) -> Result<Option<(Stored, Option<OrderRecord>)>, StoreError> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "SELECT {}, {} FROM capture_attempts a LEFT JOIN capture_orders o ON o.merchant = a.merchant \
             AND o.platform = a.platform AND o.order_id = a.order_id WHERE a.id = ?1",
            logic::qualified("a", COLUMNS),
            logic::qualified("o", ORDER_COLUMNS)
        )
    });
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let found = stmt
        .query_row([id], |row| {
            let order = match row.get_ref(NCOLUMNS)? {
                rusqlite::types::ValueRef::Null => None,
                _ => Some(raw_order_at(row, NCOLUMNS)?),
            };
            Ok((raw(row)?, order))
        })
        .optional()
        .map_err(db)?;
    match found {
        None => Ok(None),
        Some((attempt, order)) => Ok(Some((attempt.decode()?, order.map(RawOrder::decode).transpose()?))),
    }
}

/// Writes an order row: `before` is the row as read in this transaction (`None`: there is none,
/// so it is inserted). A row nothing changed in (a move from reserved to sent changes neither
/// the sums nor the attempt in flight) is not written: its `updated_at` is when its sums or its
/// attempt in flight last changed.
fn write_order(
    conn: &Connection,
    order: &OrderRecord,
    before: Option<&OrderRecord>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if before == Some(order) {
        return Ok(());
    }
    let r = RawOrder::encode(order, now)?;
    let Some(_) = before else {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = SQL.get_or_init(|| {
            format!("INSERT INTO capture_orders ({ORDER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
        });
        conn.prepare_cached(sql)
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
        return Ok(());
    };
    let changed = conn
        .prepare_cached(
            "UPDATE capture_orders SET external_minor = ?4, held_minor = ?5, in_flight = ?6, updated_at = ?7 \
             WHERE merchant = ?1 AND platform = ?2 AND order_id = ?3",
        )
        .map_err(db)?
        .execute(params![
            r.merchant,
            r.platform,
            r.order_id,
            r.external_minor,
            r.held_minor,
            r.in_flight,
            r.updated_at
        ])
        .map_err(db)?;
    if changed != 1 {
        return Err(StoreError::Database(format!(
            "sqlite: updating order {} changed {changed} rows",
            r.order_id
        )));
    }
    Ok(())
}

/// The attempt holding `new`'s idempotency key and the key of the attempt holding its id, in
/// one statement (both are unique-index lookups).
fn select_key_and_id(
    conn: &Connection,
    new: &NewAttempt,
) -> Result<(Option<Stored>, Option<String>), StoreError> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "SELECT {COLUMNS} FROM capture_attempts \
             WHERE (merchant = ?1 AND platform = ?2 AND idempotency_key = ?3) OR id = ?4"
        )
    });
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let rows =
        stmt.query_map(params![new.merchant, new.platform, new.idempotency_key, new.id], raw).map_err(db)?;
    let (mut by_key, mut id_owner) = (None, None);
    for row in rows {
        let row = row.map_err(db)?;
        if row.id == new.id {
            id_owner = Some(row.idempotency_key.clone());
        }
        if row.merchant == new.merchant
            && row.platform == new.platform
            && row.idempotency_key == new.idempotency_key
        {
            by_key = Some(row.decode()?);
        }
    }
    Ok((by_key, id_owner))
}

/// Runs inside the group's transaction (see [`commit_group`]), as every call below.
fn reserve_blocking(tx: &Connection, new: &NewAttempt) -> Result<Reservation, StoreError> {
    logic::validate(new)?;
    let (by_key, id_owner) = select_key_and_id(tx, new)?;
    let before = select_order(tx, &new.merchant, &new.platform, &new.order_id)?;
    let order = before.clone().unwrap_or_else(|| logic::first_order(new));
    let busy = match &order.in_flight {
        Some(id) => select_one(tx, Filter::Id, [id])?,
        None => None,
    };
    match logic::plan_reserve(new, by_key, id_owner, order, busy)? {
        Plan::Answer(answer) => Ok(answer),
        Plan::Insert { attempt, order } => {
            insert(tx, &attempt)?;
            write_order(tx, &order, before.as_ref(), new.now)?;
            Ok(Reservation::Reserved(attempt.attempt))
        }
    }
}

fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
}

/// The INSERT of an attempt, built once.
fn insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!("INSERT INTO capture_attempts ({COLUMNS}) VALUES ({})", placeholders(NCOLUMNS))
    })
}

fn insert(conn: &Connection, stored: &Stored) -> Result<(), StoreError> {
    let r = RawRow::encode(stored)?;
    conn.prepare_cached(insert_sql())
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
    tx: &Connection,
    id: &str,
    fence: &Fence,
    from: &[AttemptState],
    to: AttemptState,
    upd: AttemptUpdate,
    now: Timestamp,
) -> Result<Attempt, StoreError> {
    let (current, before) = select_with_order(tx, id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    let before = before.ok_or_else(|| StoreError::Corrupt {
        id: id.to_owned(),
        message: format!("order {} has no order row", current.attempt.order_id),
    })?;
    let (next, order) = logic::plan_transition(current, before.clone(), fence, from, to, upd, now)?;
    update(tx, &next)?;
    write_order(tx, &order, Some(&before), now)?;
    Ok(next.attempt)
}

fn take_lease_blocking(
    tx: &Connection,
    id: &str,
    owner: &str,
    lease_ms: u64,
    min_age_ms: Option<u64>,
    now: Timestamp,
) -> Result<LeaseGrant, StoreError> {
    let current = select_one(tx, Filter::Id, [id])?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    match logic::plan_take_lease(current, owner, lease_ms, min_age_ms, now)? {
        LeasePlan::Answer(grant) => Ok(grant),
        LeasePlan::Write(next, grant) => {
            update(tx, &next)?;
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
        // The update is cloned per run: a group may run twice (see `with`).
        self.with(move |c| transition_blocking(c, &id, &fence, &from, to, update.clone(), now)).await
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
        self.with(move |c| Ok(select_one(c, Filter::Id, [&id])?.map(|s| s.attempt))).await
    }

    async fn by_key(&self, merchant: &str, platform: &str, key: &str) -> Result<Option<Attempt>, StoreError> {
        let (m, p, k) = (merchant.to_owned(), platform.to_owned(), key.to_owned());
        self.with(move |c| {
            let found = select_one(c, Filter::Key, params![m, p, k])?;
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
            Ok(attempts(select_many(c, Filter::Unresolved, params![a, b, d, e])?))
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
        self.with(|c| Ok(attempts(select_many(c, Filter::All, [])?))).await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests {
    //! The group commit: deterministic groups (a first call holds the writer while the others
    //! queue behind it, each polled once so it is in the queue, in a known order), a refused or
    //! panicking call rolled back alone, a failed commit failing every call of its group.

    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;

    use super::*;
    use capture_core::{Currency, Money};

    use crate::{Authorization, Reservation};

    fn attempt(n: u32) -> NewAttempt {
        let usd = Currency::from_code("USD").expect("USD");
        let amount = Money::from_minor(1_000, usd);
        let order = format!("ord-{n}");
        let payments = vec![(format!("pay-{n}"), amount)];
        NewAttempt {
            id: format!("cap-{n}"),
            merchant: "m".into(),
            platform: "optty".into(),
            idempotency_key: format!("key-{n}"),
            fingerprint: crate::fingerprint("optty", &order, &amount, &payments),
            order_id: order,
            payment_ids: vec![payments[0].0.clone()],
            amount,
            authorization: Authorization::from_payments(payments.clone(), usd),
            external: Money::zero(usd),
            owner: "engine-a".into(),
            lease_ms: 30_000,
            now: Timestamp(1_790_000_000_000),
        }
    }

    type Sent<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    /// Polls a store call once: it is then in the writer's queue (a call is sent on its first
    /// poll), behind every call sent before it.
    async fn sent<'a, T>(call: impl Future<Output = T> + Send + 'a) -> Sent<'a, T> {
        let mut call: Sent<'a, T> = Box::pin(call);
        std::future::poll_fn(|cx| {
            assert!(call.as_mut().poll(cx).is_pending(), "a queued call cannot be answered yet");
            Poll::Ready(())
        })
        .await;
        call
    }

    /// Holds the writer thread inside a call until `release` is sent, so every call sent
    /// meanwhile waits in the queue and the next group carries all of them.
    async fn hold(store: &SqliteStore) -> (mpsc::Sender<()>, Sent<'_, Result<(), StoreError>>) {
        let (release, wait) = mpsc::channel::<()>();
        let (entered, inside) = mpsc::channel::<()>();
        let held = sent(store.with(move |_: &Connection| {
            entered.send(()).map_err(|_| StoreError::Database("nobody waits".into()))?;
            wait.recv().map_err(|_| StoreError::Database("never released".into()))
        }))
        .await;
        // The writer has taken the held call out of the queue and runs it.
        inside.recv().expect("the writer runs the held call");
        (release, held)
    }

    fn reserved(r: Result<Reservation, StoreError>) -> Attempt {
        match r {
            Ok(Reservation::Reserved(a)) => a,
            other => panic!("expected a reservation, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn queued_calls_share_one_commit_and_see_each_other_in_order() {
        let store = SqliteStore::in_memory().expect("store");
        let news: Vec<NewAttempt> = (0..20).map(attempt).collect();
        let before = store.commits();
        let (release, held) = hold(&store).await;
        let mut calls = Vec::new();
        for new in &news {
            calls.push(sent(store.reserve(new)).await);
        }
        // The same key again, behind the first: it must see that reservation, not yet committed
        // but earlier in the same group.
        let again = sent(store.reserve(&news[0])).await;
        release.send(()).expect("release");
        held.await.expect("held call ok");
        for call in calls {
            reserved(call.await);
        }
        match again.await {
            Ok(Reservation::Existing(a)) => assert_eq!(a.id, "cap-0"),
            other => panic!("the same key again must find the first reservation, got {other:?}"),
        }
        // One group for the held call, one for the 21 queued behind it, neither run twice.
        assert_eq!(store.commits() - before, 2);
        assert_eq!(store.reruns(), 0, "no call failed after writing");
        assert_eq!(store.all().await.expect("all").len(), 20);
    }

    #[tokio::test]
    async fn a_refused_or_panicking_call_is_rolled_back_alone() {
        let store = SqliteStore::in_memory().expect("store");
        let first = reserved(store.reserve(&attempt(1)).await);
        let fence = first.fence().expect("lease");
        let stale = Fence { token: fence.token + 1, ..fence.clone() };
        let (two, three) = (attempt(2), attempt(3));
        let before = store.commits();
        let (release, held) = hold(&store).await;
        let a = sent(store.reserve(&two)).await;
        let refused = sent(store.transition(
            &first.id,
            &stale,
            &[AttemptState::Reserved],
            AttemptState::Sent,
            AttemptUpdate { count_send: true, ..Default::default() },
            Timestamp(1_790_000_000_001),
        ))
        .await;
        let panicking = sent(store.with(|conn| -> Result<(), StoreError> {
            conn.execute_batch("DELETE FROM capture_attempts").map_err(db)?;
            panic!("a bug in a ledger call");
        }))
        .await;
        let b = sent(store.reserve(&three)).await;
        release.send(()).expect("release");
        held.await.expect("held call ok");
        reserved(a.await);
        let refusal = refused.await;
        assert!(
            matches!(refusal, Err(StoreError::LeaseLost { .. })),
            "a stale fence is refused: {refusal:?}"
        );
        match panicking.await {
            Err(StoreError::Database(m)) => assert!(m.contains("panicked"), "{m}"),
            other => panic!("a panicking call fails, got {other:?}"),
        }
        reserved(b.await);
        assert_eq!(store.commits() - before, 2);
        // The panicking call had deleted before it panicked: its group ran again, each call in
        // a savepoint (the refused transition had written nothing, and alone would not have).
        assert_eq!(store.reruns(), 1);
        // The panicking call's delete and the refused transition left nothing behind.
        let all = store.all().await.expect("all");
        assert_eq!(all.len(), 3, "{all:?}");
        let kept = store.get(&first.id).await.expect("get").expect("kept");
        assert_eq!((kept.state, kept.sends), (AttemptState::Reserved, 0));
    }

    #[tokio::test]
    async fn a_call_refused_before_it_writes_leaves_its_group_one_run() {
        let store = SqliteStore::in_memory().expect("store");
        let first = reserved(store.reserve(&attempt(1)).await);
        let stale = Fence { token: first.fence().expect("lease").token + 1, ..first.fence().expect("lease") };
        let (two, three) = (attempt(2), attempt(3));
        let (release, held) = hold(&store).await;
        let a = sent(store.reserve(&two)).await;
        let refused = sent(store.transition(
            &first.id,
            &stale,
            &[AttemptState::Reserved],
            AttemptState::Sent,
            AttemptUpdate::default(),
            Timestamp(1_790_000_000_001),
        ))
        .await;
        let b = sent(store.reserve(&three)).await;
        release.send(()).expect("release");
        held.await.expect("held call ok");
        reserved(a.await);
        assert!(matches!(refused.await, Err(StoreError::LeaseLost { .. })));
        reserved(b.await);
        assert_eq!(store.reruns(), 0, "a refusal before any write needs no savepoint");
        assert_eq!(store.all().await.expect("all").len(), 3);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_call_of_its_group_and_keeps_none() {
        // A deferred foreign key is checked at COMMIT: a call that breaks it makes the group's
        // commit fail after every call of the group has succeeded.
        let conn = Connection::open_in_memory().expect("conn");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .expect("tables");
        let store = SqliteStore::init(conn, ":memory:".into()).expect("store");
        let one = attempt(1);
        let (release, held) = hold(&store).await;
        let a = sent(store.reserve(&one)).await;
        let breaking =
            sent(store.with(|conn| conn.execute_batch("INSERT INTO child VALUES (42)").map_err(db))).await;
        let read = sent(store.all()).await;
        release.send(()).expect("release");
        held.await.expect("the held call's own group commits");
        match a.await {
            Err(StoreError::Database(m)) => {
                assert!(m.contains("committing a group of 3 calls") && m.contains("FOREIGN KEY"), "{m}")
            }
            other => panic!("a reservation whose commit failed must fail, got {other:?}"),
        }
        assert!(matches!(breaking.await, Err(StoreError::Database(_))));
        assert!(matches!(read.await, Err(StoreError::Database(_))), "reads of the group fail too");
        // Nothing of that group is in the ledger, and the next group works.
        assert!(store.all().await.expect("all").is_empty());
        reserved(store.reserve(&attempt(2)).await);
        assert_eq!(store.all().await.expect("all").len(), 1);
    }

    /// The order row's `(updated_at, in_flight)`, read with SQL.
    async fn order_row(store: &SqliteStore, order: &'static str) -> (i64, Option<String>) {
        store
            .with(move |c| {
                c.query_row(
                    "SELECT updated_at, in_flight FROM capture_orders WHERE order_id = ?1",
                    [order],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db)
            })
            .await
            .expect("order row")
    }

    #[tokio::test]
    async fn an_order_row_is_written_only_when_it_changes() {
        let store = SqliteStore::in_memory().expect("store");
        let t0: u64 = 1_790_000_000_000;
        let a = reserved(store.reserve(&attempt(1)).await);
        let fence = a.fence().expect("lease");
        assert_eq!(order_row(&store, "ord-1").await, (t0 as i64, Some(a.id.clone())));
        // Reserved -> sent changes neither the sums nor the attempt in flight: the row stays.
        let upd = AttemptUpdate { request: Some("{}".into()), count_send: true, ..Default::default() };
        let sent = store.transition(
            &a.id,
            &fence,
            &[AttemptState::Reserved],
            AttemptState::Sent,
            upd,
            Timestamp(t0 + 5),
        );
        assert_eq!(sent.await.expect("sent").updated_at, Timestamp(t0 + 5));
        assert_eq!(order_row(&store, "ord-1").await, (t0 as i64, Some(a.id.clone())));
        // Sent -> captured frees the order: the row is written.
        let usd = Currency::from_code("USD").expect("USD");
        let upd = AttemptUpdate { captured: Some(Money::from_minor(1_000, usd)), ..Default::default() };
        let done = store.transition(
            &a.id,
            &fence,
            &[AttemptState::Sent],
            AttemptState::Captured,
            upd,
            Timestamp(t0 + 9),
        );
        done.await.expect("captured");
        assert_eq!(order_row(&store, "ord-1").await, ((t0 + 9) as i64, None));
        let order = store.order("m", "optty", "ord-1").await.expect("read").expect("order");
        assert_eq!((order.held.to_minor(), order.in_flight), (Ok(1_000), None));
    }

    #[tokio::test]
    async fn a_transition_whose_order_row_is_missing_is_refused_as_corrupt() {
        let store = SqliteStore::in_memory().expect("store");
        let a = reserved(store.reserve(&attempt(1)).await);
        let fence = a.fence().expect("lease");
        store
            .with(|c| c.execute_batch("DELETE FROM capture_orders").map_err(db))
            .await
            .expect("order row deleted");
        let r = store
            .transition(
                &a.id,
                &fence,
                &[AttemptState::Reserved],
                AttemptState::Sent,
                AttemptUpdate::default(),
                Timestamp(1_790_000_000_001),
            )
            .await;
        match r {
            Err(StoreError::Corrupt { id, message }) => {
                assert_eq!(id, a.id);
                assert!(message.contains("order ord-1 has no order row"), "{message}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let kept = store.get(&a.id).await.expect("get").expect("kept");
        assert_eq!((kept.state, kept.sends), (AttemptState::Reserved, 0));
    }

    #[tokio::test]
    async fn the_database_refuses_a_state_outside_the_machine() {
        let store = SqliteStore::in_memory().expect("store");
        let a = reserved(store.reserve(&attempt(1)).await);
        for (state, allowed) in [
            ("bogus", false),
            ("", false),
            ("Captured", false),
            ("captured", true),
            ("already_captured", true),
            ("reserved", true),
        ] {
            let id = a.id.clone();
            let r = store
                .with(move |c| {
                    c.execute("UPDATE capture_attempts SET state = ?1 WHERE id = ?2", [state, id.as_str()])
                        .map_err(db)
                })
                .await;
            match (allowed, r) {
                (true, Ok(1)) => {}
                (false, Err(StoreError::Database(m))) => assert!(m.contains("CHECK constraint"), "{m}"),
                (allowed, r) => panic!("state {state:?}: allowed {allowed}, got {r:?}"),
            }
        }
    }

    mod key_and_id {
        use proptest::prelude::*;

        use super::*;

        /// A reservation from small alphabets, so that keys, ids and orders collide.
        fn arbitrary_new() -> impl Strategy<Value = NewAttempt> {
            (0..2u32, 0..2u32, 0..4u32, 0..4u32, 0..3u32).prop_map(|(m, p, k, i, o)| {
                let mut new = attempt(o);
                new.merchant = format!("m{m}");
                new.platform = ["optty", "wix"][p as usize].into();
                new.idempotency_key = format!("key-{k}");
                new.id = format!("cap-{i}");
                new
            })
        }

        proptest! {
            /// The one-statement lookup finds what the two lookups it replaced found: the
            /// attempt holding the key, and the key of the attempt holding the id.
            #[test]
            fn one_statement_finds_the_keys_attempt_and_the_ids_owner(
                reserved in proptest::collection::vec(arbitrary_new(), 0..12),
                probe in arbitrary_new(),
            ) {
                let conn = Connection::open_in_memory().expect("conn");
                conn.execute_batch(SCHEMA).expect("schema");
                for new in &reserved {
                    // Refusals (a duplicate id, a busy order) insert nothing: fine.
                    let answer = reserve_blocking(&conn, new);
                    drop(answer);
                }
                let (by_key, id_owner) = select_key_and_id(&conn, &probe).expect("lookup");
                let key_alone = select_one(
                    &conn,
                    Filter::Key,
                    params![probe.merchant, probe.platform, probe.idempotency_key],
                )
                .expect("key lookup");
                let owner_alone: Option<String> = conn
                    .query_row("SELECT idempotency_key FROM capture_attempts WHERE id = ?1", [&probe.id], |r| r.get(0))
                    .optional()
                    .expect("id lookup");
                prop_assert_eq!(by_key.map(|s| s.attempt), key_alone.map(|s| s.attempt));
                prop_assert_eq!(id_owner, owner_alone);
            }
        }
    }
}
