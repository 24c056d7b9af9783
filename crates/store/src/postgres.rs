//! The PostgreSQL backend: tokio-postgres without TLS, a pool of clients. No advisory locks (so
//! the SQL runs on PostgreSQL-compatible distributed engines too): an order's row is the lock
//! (`INSERT … ON CONFLICT DO NOTHING`, then `SELECT … FOR UPDATE`), keys are unique constraints,
//! and every transaction is retried on serialization failure, deadlock and a unique violation by
//! a concurrent insert.
//!
//! Round trips: every write is three, the statements of each pipelined (sent together, executed
//! in order): `BEGIN` with the reads that lock what the write needs, then the writes, then
//! `COMMIT` once their row counts are checked. A reservation was eight round trips, a transition
//! six. A call whose future is dropped mid-transaction drops its client with it (the server
//! then rolls back and frees the row locks), so no later call runs inside that transaction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use capture_core::Timestamp;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::logic::{
    self, COLUMNS, LeasePlan, NCOLUMNS, ORDER_COLUMNS, Plan, RawOrder, RawRow, Stored, qualified,
};
use crate::redact::{redact_target, scrub, url_password};
use crate::{
    Attempt, AttemptState, AttemptUpdate, CaptureStore, Fence, LeaseGrant, NewAttempt, OrderRecord,
    Reservation, StoreError,
};

/// Clients per store unless the URL sets `pool_size`; each is used by one call at a time.
/// Concurrent calls of one process commit in parallel on these (and the server's WAL flushes
/// several commits at once).
pub const DEFAULT_POOL_SIZE: usize = 16;
/// The most clients one store may open (`pool_size`).
pub const MAX_POOL_SIZE: usize = 256;
/// The engine's own connection parameter, taken out of the URL before the driver reads it.
const POOL_PARAM: &str = "pool_size";

/// `url` without the `pool_size` parameter, and its value (`None` when absent). Both connection
/// string forms are read: a URL's query (`postgres://h/db?pool_size=32&sslmode=disable`) and the
/// key-value form (`host=h dbname=db pool_size=32`). A value that is not a whole number from 1
/// to [`MAX_POOL_SIZE`] is refused, naming the parameter and the range.
pub(crate) fn split_pool_size(url: &str) -> Result<(String, Option<usize>), String> {
    let parse = |v: &str| match v.parse::<usize>() {
        Ok(n) if (1..=MAX_POOL_SIZE).contains(&n) => Ok(n),
        _ => Err(format!("`{POOL_PARAM}` must be a whole number from 1 to {MAX_POOL_SIZE}")),
    };
    let mut size = None;
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        // Where the driver finds the query: after the user info (up to the first `@`, so an
        // unencoded `?` in a password is the password's), then the host and the path.
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        let after_user = url[after_scheme..].find('@').map_or(after_scheme, |i| after_scheme + i + 1);
        let Some(q) = url[after_user..].find('?').map(|i| after_user + i) else {
            return Ok((url.to_owned(), None));
        };
        let (base, query) = (&url[..q], &url[q + 1..]);
        let mut kept = Vec::new();
        for pair in query.split('&') {
            // Keys and values are percent-decoded, as the driver decodes them.
            let (k, v) = pair.split_once('=').map_or((pair, None), |(k, v)| (k, Some(v)));
            if percent_decoded(k) != POOL_PARAM {
                kept.push(pair);
                continue;
            }
            match v {
                Some(v) => size = Some(parse(&percent_decoded(v))?),
                None => return Err(format!("`{POOL_PARAM}` needs a value")),
            }
        }
        if size.is_none() {
            return Ok((url.to_owned(), None));
        }
        let rest = kept.join("&");
        return Ok((if rest.is_empty() { base.to_owned() } else { format!("{base}?{rest}") }, size));
    }
    // The key-value form, read as libpq reads it: `key = value` pairs apart by spaces, a value
    // either bare (a backslash escapes the next character) or in single quotes (with \' and \\),
    // so a quoted password holding " pool_size=" stays the password's.
    // A string this reading cannot split is left whole to the driver, whose error names it.
    let Ok(pairs) = keyword_pairs(url) else { return Ok((url.to_owned(), None)) };
    let mut rest = String::with_capacity(url.len());
    for (start, end, key, value) in pairs {
        if key == POOL_PARAM {
            size = Some(parse(&value)?);
        } else {
            if !rest.is_empty() {
                rest.push(' ');
            }
            rest.push_str(&url[start..end]);
        }
    }
    Ok((if size.is_some() { rest } else { url.to_owned() }, size))
}

/// `text` with its `%XX` escapes decoded (an invalid escape, or bytes that are not UTF-8, are
/// kept as written: such a key or value is never `pool_size` or a number).
fn percent_decoded(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// The `key = value` pairs of a key-value connection string: each pair's byte span in `text`,
/// its key and its unescaped value.
fn keyword_pairs(text: &str) -> Result<Vec<(usize, usize, String, String)>, ()> {
    // By characters: the driver splits on any Unicode white space (`char::is_whitespace`).
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(text.len(), |&(o, _)| o);
    let skip_spaces = |mut i: usize| {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        i
    };
    let mut pairs = Vec::new();
    let mut i = 0;
    loop {
        i = skip_spaces(i);
        if i >= chars.len() {
            return Ok(pairs);
        }
        let start = i;
        while at(i).is_some_and(|c| c != '=' && !c.is_whitespace()) {
            i += 1;
        }
        let key = text[offset(start)..offset(i)].to_owned();
        i = skip_spaces(i);
        if at(i) != Some('=') {
            return Err(()); // a key without `=`
        }
        i = skip_spaces(i + 1);
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            loop {
                match at(i) {
                    None => return Err(()), // an unterminated quoted value
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if at(i + 1).is_some() => {
                        value.extend(at(i + 1));
                        i += 2;
                    }
                    Some(c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                if c == '\\' && at(i + 1).is_some() {
                    i += 1;
                }
                value.extend(at(i));
                i += 1;
            }
        }
        pairs.push((offset(start), offset(i), key, value));
    }
}

/// How many times a transaction that lost a race (serialization failure, deadlock, unique
/// violation by a concurrent insert) is run again.
const MAX_RETRIES: u32 = 20;
/// The schema version this build writes.
const SCHEMA_VERSION: i32 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS capture_store_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS capture_orders (
    merchant            TEXT    NOT NULL,
    platform            TEXT    NOT NULL,
    order_id            TEXT    NOT NULL,
    currency            TEXT    NOT NULL,
    authorized_minor    BIGINT  NOT NULL CHECK (authorized_minor >= 0),
    payments            TEXT    NOT NULL,
    external_minor      BIGINT  NOT NULL CHECK (external_minor >= 0),
    held_minor          BIGINT  NOT NULL CHECK (held_minor >= 0),
    in_flight           TEXT,
    updated_at          BIGINT  NOT NULL,
    PRIMARY KEY (merchant, platform, order_id)
);
CREATE TABLE IF NOT EXISTS capture_attempts (
    seq                 BIGSERIAL PRIMARY KEY,
    id                  TEXT    NOT NULL UNIQUE,
    merchant            TEXT    NOT NULL,
    platform            TEXT    NOT NULL,
    idempotency_key     TEXT    NOT NULL,
    fingerprint         TEXT    NOT NULL,
    order_id            TEXT    NOT NULL,
    payment_ids         TEXT    NOT NULL,
    amount_minor        BIGINT  NOT NULL CHECK (amount_minor > 0),
    currency            TEXT    NOT NULL,
    state               TEXT    NOT NULL CHECK (state IN
                            ('reserved','sent','captured','pending','failed','unknown','already_captured')),
    resendable          BOOLEAN NOT NULL DEFAULT FALSE,
    captured_minor      BIGINT,
    anomaly             TEXT,
    platform_capture_id TEXT,
    request             TEXT,
    response            TEXT,
    outcome             TEXT,
    sends               BIGINT  NOT NULL DEFAULT 0 CHECK (sends >= 0),
    last_sent_at        BIGINT,
    lease_owner         TEXT,
    lease_token         BIGINT  NOT NULL CHECK (lease_token >= 0),
    lease_at            BIGINT  NOT NULL,
    lease_until         BIGINT  NOT NULL,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    CONSTRAINT capture_attempts_key UNIQUE (merchant, platform, idempotency_key)
);
CREATE INDEX IF NOT EXISTS capture_attempts_order ON capture_attempts (merchant, platform, order_id);
CREATE INDEX IF NOT EXISTS capture_attempts_state ON capture_attempts (state);
";

/// The statements every call uses, prepared once per client.
struct Statements {
    by_key: Statement,
    by_id: Statement,
    by_id_for_update: Statement,
    /// The attempt and its order, both locked (attempt first, then order).
    attempt_and_order_for_update: Statement,
    id_owner: Statement,
    order: Statement,
    order_row: Statement,
    order_for_update: Statement,
    /// The attempt in flight on an order (a statement of its own, run after the order's lock is
    /// granted: a row joined to a `FOR UPDATE` row that had to be waited for would come from the
    /// snapshot taken before the wait, and miss the attempt the lock's holder just committed).
    busy: Statement,
    order_insert: Statement,
    order_update: Statement,
    insert: Statement,
    update: Statement,
    unresolved: Statement,
    all: Statement,
}

struct PgConn {
    client: Client,
    st: Statements,
}

/// A slot of the pool, held with its permit.
struct Pooled<'a> {
    guard: MutexGuard<'a, Option<PgConn>>,
    _permit: SemaphorePermit<'a>,
}

/// A connected client of the pool, held with its permit.
struct PooledConn<'a> {
    conn: MappedMutexGuard<'a, PgConn>,
    _permit: SemaphorePermit<'a>,
}

impl std::ops::Deref for PooledConn<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        &self.conn
    }
}

/// A pooled client inside a transaction: unless the transaction was seen to end, dropping this
/// drops the client (closing its connection, so the server rolls the transaction back).
struct OpenTransaction<'a> {
    slot: Pooled<'a>,
    ended: bool,
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if !self.ended {
            *self.slot.guard = None;
        }
    }
}

/// The ledger in a PostgreSQL database, shared by any number of engine processes.
pub struct PostgresStore {
    config: Config,
    /// The URL with its password redacted, for messages.
    target: String,
    /// The password as written, for scrubbing messages we do not control.
    secrets: Vec<String>,
    slots: Vec<Mutex<Option<PgConn>>>,
    /// One permit per slot: a call waits here for any free client, never in the queue of one
    /// busy slot while another is free.
    permits: Semaphore,
    next: AtomicUsize,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("pool", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// A failure inside a transaction: the database's (maybe worth a retry) or the store's own.
enum Fail {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::DUPLICATE_OBJECT
    })
}

fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut m = format!("{} {}: {}", d.severity(), d.code().code(), d.message());
            if let Some(detail) = d.detail() {
                m.push_str(" (");
                m.push_str(detail);
                m.push(')');
            }
            m
        }
        None => e.to_string(),
    }
}

fn raw(row: &tokio_postgres::Row, at: usize) -> Result<RawRow, tokio_postgres::Error> {
    let col = |i: usize| at + i;
    Ok(RawRow {
        id: row.try_get(col(0))?,
        merchant: row.try_get(col(1))?,
        platform: row.try_get(col(2))?,
        idempotency_key: row.try_get(col(3))?,
        fingerprint: row.try_get(col(4))?,
        order_id: row.try_get(col(5))?,
        payment_ids: row.try_get(col(6))?,
        amount_minor: row.try_get(col(7))?,
        currency: row.try_get(col(8))?,
        state: row.try_get(col(9))?,
        resendable: row.try_get(col(10))?,
        captured_minor: row.try_get(col(11))?,
        anomaly: row.try_get(col(12))?,
        platform_capture_id: row.try_get(col(13))?,
        request: row.try_get(col(14))?,
        response: row.try_get(col(15))?,
        outcome: row.try_get(col(16))?,
        sends: row.try_get(col(17))?,
        last_sent_at: row.try_get(col(18))?,
        lease_owner: row.try_get(col(19))?,
        lease_token: row.try_get(col(20))?,
        lease_at: row.try_get(col(21))?,
        lease_until: row.try_get(col(22))?,
        created_at: row.try_get(col(23))?,
        updated_at: row.try_get(col(24))?,
    })
}

fn decode_order(row: &tokio_postgres::Row) -> Result<OrderRecord, Fail> {
    decode_order_at(row, 0)
}

fn decode_order_at(row: &tokio_postgres::Row, at: usize) -> Result<OrderRecord, Fail> {
    let col = |i: usize| at + i;
    let raw = RawOrder {
        merchant: row.try_get(col(0))?,
        platform: row.try_get(col(1))?,
        order_id: row.try_get(col(2))?,
        currency: row.try_get(col(3))?,
        authorized_minor: row.try_get(col(4))?,
        payments: row.try_get(col(5))?,
        external_minor: row.try_get(col(6))?,
        held_minor: row.try_get(col(7))?,
        in_flight: row.try_get(col(8))?,
        updated_at: row.try_get(col(9))?,
    };
    Ok(raw.decode()?)
}

fn decode(row: &tokio_postgres::Row) -> Result<Stored, Fail> {
    decode_at(row, 0)
}

fn decode_at(row: &tokio_postgres::Row, at: usize) -> Result<Stored, Fail> {
    Ok(raw(row, at)?.decode()?)
}

fn decode_all(rows: &[tokio_postgres::Row]) -> Result<Vec<Stored>, Fail> {
    rows.iter().map(decode).collect()
}

impl PostgresStore {
    /// Connects (no TLS), creates the schema if missing and checks its version. The URL's password
    /// never appears in an error. The store keeps up to [`DEFAULT_POOL_SIZE`] clients, or as many
    /// as the URL's own `pool_size` parameter says (1 to [`MAX_POOL_SIZE`]; taken out before the
    /// driver reads the URL): `postgres://user@host/db?pool_size=4`, e.g. to keep many processes
    /// under the server's `max_connections`. Calls beyond the pool wait for a free client.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let target = redact_target(url);
        let mut secrets = url_password(url);
        let (url, pool_size) =
            split_pool_size(url).map_err(|message| StoreError::Open { target: target.clone(), message })?;
        let pool_size = pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| StoreError::Open {
            target: target.clone(),
            message: scrub(&e.to_string(), &secrets),
        })?;
        if let Some(p) = config.get_password() {
            secrets.push(String::from_utf8_lossy(p).into_owned());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let store = PostgresStore {
            config,
            target,
            secrets,
            slots: (0..pool_size).map(|_| Mutex::new(None)).collect(),
            permits: Semaphore::new(pool_size),
            next: AtomicUsize::new(0),
        };
        let open_err =
            |e: StoreError| StoreError::Open { target: store.target.clone(), message: e.to_string() };
        let mut client = store.connect_client().await.map_err(open_err)?;
        store.create_schema(&mut client).await.map_err(open_err)?;
        let st = store.prepare(&client).await.map_err(open_err)?;
        *store.slots[0].lock().await = Some(PgConn { client, st });
        Ok(store)
    }

    /// How many clients this store may open at once.
    pub fn pool_size(&self) -> usize {
        self.slots.len()
    }

    fn err(&self, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Database(format!("postgres: {}", scrub(&pg_message(e), &self.secrets)))
    }

    fn fail(&self, f: Fail) -> StoreError {
        match f {
            Fail::Pg(e) => self.err(&e),
            Fail::Store(e) => e,
        }
    }

    async fn connect_client(&self) -> Result<Client, StoreError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| self.err(&e))?;
        // The connection task ends when the client is dropped or the server goes away; the next
        // call then sees `is_closed` and connects again.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    async fn create_schema(&self, client: &mut Client) -> Result<(), StoreError> {
        // Two processes creating the same tables at once can collide in the catalog even with
        // IF NOT EXISTS (a unique violation on pg_type, or "already exists"): the loser tries again
        // and then finds the tables.
        let mut tries = 0;
        let tx = loop {
            let tx = client.transaction().await.map_err(|e| self.err(&e))?;
            match tx.batch_execute(SCHEMA).await {
                Ok(()) => break tx,
                Err(e) if retryable(&e) && tries < MAX_RETRIES => {
                    tries += 1;
                    tx.rollback().await.map_err(|e| self.err(&e))?;
                    tokio::time::sleep(Duration::from_millis(u64::from(tries) * 5)).await;
                }
                Err(e) => return Err(self.err(&e)),
            }
        };
        let version: Option<i32> = tx
            .query_one("SELECT MAX(version) FROM capture_store_schema", &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.err(&e))?;
        match version {
            None => {
                tx.execute("INSERT INTO capture_store_schema (version) VALUES ($1)", &[&SCHEMA_VERSION])
                    .await
                    .map_err(|e| self.err(&e))?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::Database(format!(
                    "the ledger has schema version {v}, this build knows up to {SCHEMA_VERSION}: upgrade the engine"
                )));
            }
            Some(v) if v < SCHEMA_VERSION => {
                return Err(StoreError::Database(format!(
                    "the ledger has schema version {v}, written by an older engine; this build writes \
                     {SCHEMA_VERSION}: resolve its open attempts with the older engine and use a new database"
                )));
            }
            Some(_) => {}
        }
        tx.commit().await.map_err(|e| self.err(&e))
    }

    async fn prepare(&self, client: &Client) -> Result<Statements, StoreError> {
        let p = |sql: String| async move { client.prepare(&sql).await.map_err(|e| self.err(&e)) };
        let select = |filter: &str| format!("SELECT {COLUMNS} FROM capture_attempts WHERE {filter}");
        let many = |filter: &str| {
            format!("SELECT {COLUMNS} FROM capture_attempts WHERE {filter} ORDER BY created_at, seq")
        };
        let order_select = |tail: &str| {
            format!(
                "SELECT {ORDER_COLUMNS} FROM capture_orders WHERE merchant = $1 AND platform = $2 AND order_id = $3{tail}"
            )
        };
        let placeholders = (1..=NCOLUMNS).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        Ok(Statements {
            by_key: p(select("merchant = $1 AND platform = $2 AND idempotency_key = $3")).await?,
            by_id: p(select("id = $1")).await?,
            by_id_for_update: p(select("id = $1 FOR UPDATE")).await?,
            attempt_and_order_for_update: p(format!(
                "SELECT {}, {} FROM capture_attempts a JOIN capture_orders o ON o.merchant = a.merchant \
                 AND o.platform = a.platform AND o.order_id = a.order_id WHERE a.id = $1 FOR UPDATE",
                qualified("a", COLUMNS),
                qualified("o", ORDER_COLUMNS)
            ))
            .await?,
            id_owner: p("SELECT idempotency_key FROM capture_attempts WHERE id = $1".into()).await?,
            order: p(many("merchant = $1 AND platform = $2 AND order_id = $3")).await?,
            order_row: p(order_select("")).await?,
            order_for_update: p(order_select(" FOR UPDATE")).await?,
            busy: p(select(
                "id = (SELECT in_flight FROM capture_orders WHERE merchant = $1 AND platform = $2 AND order_id = $3)",
            ))
            .await?,
            order_insert: p(format!(
                "INSERT INTO capture_orders ({ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (merchant, platform, order_id) DO NOTHING"
            ))
            .await?,
            order_update: p("UPDATE capture_orders SET external_minor = $4, held_minor = $5, in_flight = $6, \
                 updated_at = $7 WHERE merchant = $1 AND platform = $2 AND order_id = $3"
                .into())
            .await?,
            insert: p(format!("INSERT INTO capture_attempts ({COLUMNS}) VALUES ({placeholders})")).await?,
            update: p("UPDATE capture_attempts SET state = $2, resendable = $3, captured_minor = $4, anomaly = $5, \
                 platform_capture_id = $6, request = $7, response = $8, outcome = $9, sends = $10, \
                 last_sent_at = $11, lease_owner = $12, lease_token = $13, lease_at = $14, lease_until = $15, \
                 updated_at = $16 WHERE id = $1"
                .into())
            .await?,
            unresolved: p(many("state IN ('reserved', 'sent', 'pending', 'unknown')")).await?,
            all: p(many("TRUE")).await?,
        })
    }

    /// A pooled slot, connected: the first free one once a permit says one is free.
    async fn slot(&self) -> Result<Pooled<'_>, StoreError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Database("postgres: the pool is closed".into()))?;
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let free = (0..n).find_map(|i| self.slots[(start + i) % n].try_lock().ok());
        let mut guard = match free {
            Some(g) => g,
            // Only permit holders lock slots, so one is free; waiting is only a fallback.
            None => self.slots[start].lock().await,
        };
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = None;
            let client = self.connect_client().await?;
            let st = self.prepare(&client).await?;
            *guard = Some(PgConn { client, st });
        }
        Ok(Pooled { guard, _permit: permit })
    }

    async fn conn(&self) -> Result<PooledConn<'_>, StoreError> {
        let Pooled { guard, _permit } = self.slot().await?;
        let conn = MutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| StoreError::Database("postgres: no connection".into()))?;
        Ok(PooledConn { conn, _permit })
    }

    /// Runs `body` as one transaction on a pooled client: `body` pipelines its own `BEGIN` with
    /// its first statements and ends with `COMMIT` (or returns without writing); whatever it
    /// returns, a transaction left open is rolled back here. If this future is dropped before
    /// that (a caller's timeout), or the ROLLBACK fails, the client is dropped with its
    /// connection: the server then ends the transaction and frees its row locks at once, and
    /// no later call can run inside it.
    async fn in_transaction<T>(
        &self,
        body: impl AsyncFnOnce(&Client, &Statements) -> Result<Ended<T>, Fail>,
    ) -> Result<T, Fail> {
        let mut open = OpenTransaction { slot: self.slot().await?, ended: false };
        let Some(PgConn { client, st }) = open.slot.guard.as_ref() else {
            return Err(StoreError::Database("postgres: no connection".into()).into());
        };
        let result = match body(client, st).await {
            Ok(Ended::Committed(v)) => Ok(v),
            Ok(Ended::Untouched(v)) => client.batch_execute("ROLLBACK").await.map(|()| v).map_err(Fail::from),
            Err(e) => {
                // After a failed COMMIT the server has already ended the transaction; ROLLBACK
                // then only warns. A ROLLBACK that fails leaves `ended` unset: the client goes.
                open.ended = client.batch_execute("ROLLBACK").await.is_ok();
                return Err(e);
            }
        };
        open.ended = result.is_ok();
        result
    }

    async fn reserve_once(&self, new: &NewAttempt) -> Result<Reservation, Fail> {
        self.in_transaction(async |client, st| {
            // The order's row is the lock: created by the first reservation (first snapshot
            // wins), then locked by every writer of the order, in every process, until its
            // commit. The reads after the lock run after it is granted (a pipeline executes in
            // order), each seeing every commit made before.
            let first = RawOrder::encode(&logic::first_order(new), new.now)?;
            let insert_order: [&(dyn ToSql + Sync); 10] = [
                &first.merchant,
                &first.platform,
                &first.order_id,
                &first.currency,
                &first.authorized_minor,
                &first.payments,
                &first.external_minor,
                &first.held_minor,
                &first.in_flight,
                &first.updated_at,
            ];
            let order_key: [&(dyn ToSql + Sync); 3] = [&new.merchant, &new.platform, &new.order_id];
            let key: [&(dyn ToSql + Sync); 3] = [&new.merchant, &new.platform, &new.idempotency_key];
            let attempt_id: [&(dyn ToSql + Sync); 1] = [&new.id];
            let (r0, r1, r2, r3, r4, r5) = tokio::join!(
                client.batch_execute("BEGIN"),
                client.execute(&st.order_insert, &insert_order),
                client.query_one(&st.order_for_update, &order_key),
                client.query_opt(&st.by_key, &key),
                client.query_opt(&st.id_owner, &attempt_id),
                client.query_opt(&st.busy, &order_key),
            );
            // The first failure in statement order: the later ones only say the transaction was aborted.
            let (_, _, locked, by_key, id_owner, busy) = (r0?, r1?, r2?, r3?, r4?, r5?);
            let order = decode_order(&locked)?;
            let busy = busy.map(|row| decode(&row)).transpose()?;
            let by_key = by_key.map(|row| decode(&row)).transpose()?;
            let id_owner: Option<String> = match (&by_key, id_owner) {
                (None, Some(row)) => Some(row.try_get(0)?),
                _ => None,
            };
            let busy = if by_key.is_none() { busy } else { None };
            match logic::plan_reserve(new, by_key, id_owner, order, busy)? {
                Plan::Answer(answer) => Ok(Ended::Untouched(answer)),
                Plan::Insert { attempt, order } => {
                    let r = RawRow::encode(&attempt)?;
                    let o = RawOrder::encode(&order, new.now)?;
                    // A concurrent reservation of the same key for another order locks another
                    // order row: the UNIQUE constraint stops one of them, which then retries and
                    // sees the key.
                    let insert: [&(dyn ToSql + Sync); NCOLUMNS] = [
                        &r.id,
                        &r.merchant,
                        &r.platform,
                        &r.idempotency_key,
                        &r.fingerprint,
                        &r.order_id,
                        &r.payment_ids,
                        &r.amount_minor,
                        &r.currency,
                        &r.state,
                        &r.resendable,
                        &r.captured_minor,
                        &r.anomaly,
                        &r.platform_capture_id,
                        &r.request,
                        &r.response,
                        &r.outcome,
                        &r.sends,
                        &r.last_sent_at,
                        &r.lease_owner,
                        &r.lease_token,
                        &r.lease_at,
                        &r.lease_until,
                        &r.created_at,
                        &r.updated_at,
                    ];
                    let (r0, r1) =
                        tokio::join!(client.execute(&st.insert, &insert), Self::write_order(client, st, &o));
                    // The first failure in statement order: the later ones only say the transaction was aborted.
                    let (_, changed) = (r0?, r1?);
                    one_row("order", &o.order_id, changed)?;
                    client.batch_execute("COMMIT").await?;
                    Ok(Ended::Committed(Reservation::Reserved(attempt.attempt)))
                }
            }
        })
        .await
    }

    async fn write_order(
        client: &Client,
        st: &Statements,
        o: &RawOrder,
    ) -> Result<u64, tokio_postgres::Error> {
        client
            .execute(
                &st.order_update,
                &[
                    &o.merchant,
                    &o.platform,
                    &o.order_id,
                    &o.external_minor,
                    &o.held_minor,
                    &o.in_flight,
                    &o.updated_at,
                ],
            )
            .await
    }

    async fn write_attempt(
        client: &Client,
        st: &Statements,
        r: &RawRow,
    ) -> Result<u64, tokio_postgres::Error> {
        client
            .execute(
                &st.update,
                &[
                    &r.id,
                    &r.state,
                    &r.resendable,
                    &r.captured_minor,
                    &r.anomaly,
                    &r.platform_capture_id,
                    &r.request,
                    &r.response,
                    &r.outcome,
                    &r.sends,
                    &r.last_sent_at,
                    &r.lease_owner,
                    &r.lease_token,
                    &r.lease_at,
                    &r.lease_until,
                    &r.updated_at,
                ],
            )
            .await
    }

    async fn transition_once(
        &self,
        id: &str,
        fence: &Fence,
        from: &[AttemptState],
        to: AttemptState,
        update: AttemptUpdate,
        now: Timestamp,
    ) -> Result<Attempt, Fail> {
        self.in_transaction(async |client, st| {
            // Row locks, always attempt then order (reservations lock only the order and insert
            // a row nobody else can lock yet): no cycle.
            let attempt_id: [&(dyn ToSql + Sync); 1] = [&id];
            let (r0, r1) = tokio::join!(
                client.batch_execute("BEGIN"),
                client.query_opt(&st.attempt_and_order_for_update, &attempt_id)
            );
            // The first failure in statement order: the later ones only say the transaction was aborted.
            let (_, row) = (r0?, r1?);
            let Some(row) = row else {
                // No attempt, or (a corrupt ledger) an attempt without its order row.
                return Err(match client.query_opt(&st.by_id, &[&id]).await? {
                    Some(_) => StoreError::Corrupt {
                        id: id.to_owned(),
                        message: "its order has no order row".into(),
                    },
                    None => StoreError::NotFound(id.to_owned()),
                }
                .into());
            };
            let current = decode(&row)?;
            let before = decode_order_at(&row, NCOLUMNS)?;
            let (next, order) =
                logic::plan_transition(current, before.clone(), fence, from, to, update, now)?;
            let r = RawRow::encode(&next)?;
            if order == before {
                // Nothing the order row records changed (reserved -> sent): it is not written, as
                // on SQLite; its `updated_at` is when its sums or its attempt in flight changed.
                one_row("attempt", &r.id, Self::write_attempt(client, st, &r).await?)?;
            } else {
                let o = RawOrder::encode(&order, now)?;
                let (r0, r1) =
                    tokio::join!(Self::write_attempt(client, st, &r), Self::write_order(client, st, &o));
                // The first failure in statement order: the later ones only say the transaction
                // was aborted.
                let (attempt_rows, order_rows) = (r0?, r1?);
                one_row("attempt", &r.id, attempt_rows)?;
                one_row("order", &o.order_id, order_rows)?;
            }
            client.batch_execute("COMMIT").await?;
            Ok(Ended::Committed(next.attempt))
        })
        .await
    }

    async fn take_lease_once(
        &self,
        id: &str,
        owner: &str,
        lease_ms: u64,
        min_age_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<LeaseGrant, Fail> {
        self.in_transaction(async |client, st| {
            let attempt_id: [&(dyn ToSql + Sync); 1] = [&id];
            let (r0, r1) = tokio::join!(
                client.batch_execute("BEGIN"),
                client.query_opt(&st.by_id_for_update, &attempt_id)
            );
            // The first failure in statement order: the later ones only say the transaction was aborted.
            let (_, row) = (r0?, r1?);
            let current = decode(&row.ok_or_else(|| StoreError::NotFound(id.to_owned()))?)?;
            match logic::plan_take_lease(current, owner, lease_ms, min_age_ms, now)? {
                LeasePlan::Answer(grant) => Ok(Ended::Untouched(grant)),
                LeasePlan::Write(next, grant) => {
                    let r = RawRow::encode(&next)?;
                    one_row("attempt", &r.id, Self::write_attempt(client, st, &r).await?)?;
                    client.batch_execute("COMMIT").await?;
                    Ok(Ended::Committed(grant))
                }
            }
        })
        .await
    }

    /// A read, retried like every write: under SERIALIZABLE (a server or database whose default
    /// isolation it is) even a lone SELECT can fail with a serialization failure.
    async fn read(
        &self,
        pick: impl Fn(&Statements) -> &Statement,
        args: &[String],
    ) -> Result<Vec<Stored>, StoreError> {
        let pick = &pick;
        retrying(self, move || async move {
            let conn = self.conn().await?;
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                args.iter().map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
            let rows = conn.client.query(pick(&conn.st), &params).await?;
            decode_all(&rows)
        })
        .await
    }
}

/// How a transaction body ended: committed, or without a write (rolled back by the caller).
enum Ended<T> {
    Committed(T),
    Untouched(T),
}

/// An update of a row this transaction has locked changes exactly that row.
fn one_row(what: &str, id: &str, changed: u64) -> Result<(), Fail> {
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Database(format!("postgres: updating {what} {id} changed {changed} rows")).into())
    }
}

/// Runs `op` again while it fails with a retryable database error (a lost race), a few times.
async fn retrying<T, F, Fut>(store: &PostgresStore, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Fail>>,
{
    let mut tries = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(Fail::Pg(e)) if retryable(&e) && tries < MAX_RETRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(u64::from(tries) * 2)).await;
            }
            Err(f) => return Err(store.fail(f)),
        }
    }
}

fn attempts(rows: Vec<Stored>) -> Vec<Attempt> {
    rows.into_iter().map(|s| s.attempt).collect()
}

#[async_trait::async_trait]
impl CaptureStore for PostgresStore {
    async fn reserve(&self, new: &NewAttempt) -> Result<Reservation, StoreError> {
        logic::validate(new)?;
        retrying(self, || self.reserve_once(new)).await
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
        retrying(self, || self.transition_once(id, fence, from, to, update.clone(), now)).await
    }

    async fn take_lease(
        &self,
        id: &str,
        owner: &str,
        lease_ms: u64,
        min_age_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<LeaseGrant, StoreError> {
        retrying(self, || self.take_lease_once(id, owner, lease_ms, min_age_ms, now)).await
    }

    async fn order(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        retrying(self, || async {
            let conn = self.conn().await?;
            let row = conn.client.query_opt(&conn.st.order_row, &[&merchant, &platform, &order_id]).await?;
            row.map(|r| decode_order(&r)).transpose()
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Attempt>, StoreError> {
        Ok(self.read(|st| &st.by_id, &[id.to_owned()]).await?.into_iter().next().map(|s| s.attempt))
    }

    async fn by_key(&self, merchant: &str, platform: &str, key: &str) -> Result<Option<Attempt>, StoreError> {
        let args = vec![merchant.to_owned(), platform.to_owned(), key.to_owned()];
        Ok(self.read(|st| &st.by_key, &args).await?.into_iter().next().map(|s| s.attempt))
    }

    async fn unresolved(&self) -> Result<Vec<Attempt>, StoreError> {
        Ok(attempts(self.read(|st| &st.unresolved, &[]).await?))
    }

    async fn order_attempts(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Vec<Attempt>, StoreError> {
        let args = vec![merchant.to_owned(), platform.to_owned(), order_id.to_owned()];
        Ok(attempts(self.read(|st| &st.order, &args).await?))
    }

    async fn all(&self) -> Result<Vec<Attempt>, StoreError> {
        Ok(attempts(self.read(|st| &st.all, &[]).await?))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
mod pool_size_tests {
    use super::split_pool_size;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the text: no panic; without a `pool_size` taken out, the text is untouched;
        /// with one, what remains no longer holds that pair, and a quoted password survives.
        #[test]
        fn any_text_is_split_without_panic_and_left_whole_unless_the_size_was_taken(
            text in "\\PC{0,80}",
            password in "[ -~]{0,20}",
            size in 1usize..=256,
        ) {
            if let Ok((rest, None)) = split_pool_size(&text) {
                prop_assert_eq!(rest, text.clone());
            }
            let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
            let kv = format!("host=h password='{quoted}' pool_size={size}");
            let expected = format!("host=h password='{quoted}'");
            prop_assert_eq!(split_pool_size(&kv), Ok((expected, Some(size))));
        }
    }

    #[test]
    fn pool_size_is_taken_out_of_either_connection_string_form() {
        let cases = [
            ("postgres://u@h/db", "postgres://u@h/db", None),
            ("postgres://u@h/db?pool_size=32", "postgres://u@h/db", Some(32)),
            (
                "postgresql://u@h/db?sslmode=disable&pool_size=8",
                "postgresql://u@h/db?sslmode=disable",
                Some(8),
            ),
            (
                "postgres://u@h/db?pool_size=1&connect_timeout=5",
                "postgres://u@h/db?connect_timeout=5",
                Some(1),
            ),
            (
                "postgres://u@h/db?application_name=pool_size_x",
                "postgres://u@h/db?application_name=pool_size_x",
                None,
            ),
            ("host=/tmp dbname=db pool_size=256", "host=/tmp dbname=db", Some(256)),
            ("host=/tmp dbname=db", "host=/tmp dbname=db", None),
            ("pool_size = 4  host=/tmp", "host=/tmp", Some(4)),
            ("host=h pool_size='12' password='a b'", "host=h password='a b'", Some(12)),
            // A quoted password that holds the parameter's text is the password's.
            ("host=h password='x pool_size=3 y' pool_size=5", "host=h password='x pool_size=3 y'", Some(5)),
            ("host=h password='x pool_size=3 y'", "host=h password='x pool_size=3 y'", None),
            (
                r"host=h password='it\'s pool_size=3' pool_size=2",
                r"host=h password='it\'s pool_size=3'",
                Some(2),
            ),
            (r"host=h password=a\ pool_size=3", r"host=h password=a\ pool_size=3", None),
        ];
        for (url, rest, size) in cases {
            assert_eq!(split_pool_size(url), Ok((rest.to_owned(), size)), "{url}");
        }
    }

    #[test]
    fn a_pool_size_out_of_range_or_not_a_number_is_refused_by_name() {
        for url in [
            "postgres://h/db?pool_size=0",
            "postgres://h/db?pool_size=257",
            "postgres://h/db?pool_size=-1",
            "postgres://h/db?pool_size=lots",
            "postgres://h/db?pool_size=",
            "postgres://h/db?pool_size",
            "host=h pool_size=99999999999999999999999",
        ] {
            let err = split_pool_size(url).expect_err(url);
            assert!(err.contains("pool_size"), "{url}: {err}");
        }
        // What the key-value reading cannot split goes to the driver whole (its error names it).
        for url in ["host=h password='never closed pool_size=3", "host=h pool_size", "host=h junk"] {
            assert_eq!(split_pool_size(url), Ok((url.to_owned(), None)), "{url}");
        }
    }

    // Hostile inputs. Each case names what the driver (tokio-postgres) reads, since the rest of
    // the string goes to it (the last test pins the driver's own reading).

    /// What a split should give: what goes to the driver and the size, or a refusal.
    type Expected<'a> = Result<(&'a str, Option<usize>), ()>;

    /// `(input, expected)`: the split must give exactly this.
    fn check(cases: &[(&str, Expected<'_>)]) -> Vec<String> {
        let mut failures = Vec::new();
        for (url, expected) in cases {
            let got = split_pool_size(url);
            let ok = match (expected, &got) {
                (Ok((rest, size)), Ok((r, s))) => rest == r && size == s,
                (Err(()), Err(_)) => true,
                _ => false,
            };
            if !ok {
                failures.push(format!("{url:?}: expected {expected:?}, got {got:?}"));
            }
        }
        failures
    }

    #[test]
    fn a_string_without_pool_size_is_returned_byte_identical() {
        // Nothing to take out: the string must come back untouched, every byte of it.
        let failures = check(&[
            ("postgres://h/db?", Ok(("postgres://h/db?", None))),
            ("postgres://h/db?&", Ok(("postgres://h/db?&", None))),
            ("postgres://h/db?&&", Ok(("postgres://h/db?&&", None))),
            ("postgres://u:pw@h/db?sslmode=disable&", Ok(("postgres://u:pw@h/db?sslmode=disable&", None))),
            ("postgres://h/db?xpool_size=3", Ok(("postgres://h/db?xpool_size=3", None))),
            ("postgres://h/db?pool_size_x=3", Ok(("postgres://h/db?pool_size_x=3", None))),
            ("postgres://h/db?POOL_SIZE=3", Ok(("postgres://h/db?POOL_SIZE=3", None))),
            ("postgres://h/db?Pool_Size=3", Ok(("postgres://h/db?Pool_Size=3", None))),
            ("host=h xpool_size=3", Ok(("host=h xpool_size=3", None))),
            ("host=h pool_size_x=3", Ok(("host=h pool_size_x=3", None))),
            ("host=h POOL_SIZE=3", Ok(("host=h POOL_SIZE=3", None))),
            ("host=h\tpassword='a\tb'\n", Ok(("host=h\tpassword='a\tb'\n", None))),
            ("", Ok(("", None))),
            ("   ", Ok(("   ", None))),
        ]);
        assert!(failures.is_empty(), "altered without a pool_size to take out:\n{}", failures.join("\n"));
    }

    #[test]
    fn url_prefix_suffix_repeated_and_empty_pairs() {
        let failures = check(&[
            ("postgres://h/db?xpool_size=3&pool_size=4", Ok(("postgres://h/db?xpool_size=3", Some(4)))),
            ("postgres://h/db?pool_size_x=3&pool_size=4", Ok(("postgres://h/db?pool_size_x=3", Some(4)))),
            ("postgres://h/db?pool_size=4&pool_size_x=3", Ok(("postgres://h/db?pool_size_x=3", Some(4)))),
            ("postgres://h/db?a=pool_size=9&pool_size=4", Ok(("postgres://h/db?a=pool_size=9", Some(4)))),
            ("postgres://h/db?pool_size=04", Ok(("postgres://h/db", Some(4)))),
            ("postgres://h/db?pool_size=3=4", Err(())),
            ("postgres://h/db?pool_size= 4", Err(())),
            ("postgres://h/db?pool_size=4 ", Err(())),
            ("postgres://h/db?pool_size=\u{ff14}", Err(())),
            ("postgres://h/db?pool_size=256", Ok(("postgres://h/db", Some(256)))),
            ("postgres://h/db?pool_size=18446744073709551617", Err(())),
            ("postgres://h/db?pool_size=", Err(())),
            ("postgres://h/db?pool_size", Err(())),
            ("postgres://h/db?&pool_size=2&", Ok(("postgres://h/db?&", Some(2)))),
        ]);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        // Repeated: never left in the rest; the last one wins (as the driver reads repeats) or
        // the string is refused, never the first silently.
        for url in ["postgres://h/db?pool_size=4&pool_size=8", "postgres://h/db?pool_size=4&a=b&pool_size=8"]
        {
            match split_pool_size(url) {
                Ok((rest, size)) => {
                    assert!(!rest.contains("pool_size"), "{url}: {rest}");
                    assert_eq!(size, Some(8), "{url}");
                }
                Err(e) => assert!(e.contains("pool_size"), "{e}"),
            }
        }
        // A bad repeat is refused even after a good one.
        assert!(split_pool_size("postgres://h/db?pool_size=4&pool_size=0").is_err());
    }

    #[test]
    fn a_url_password_holding_a_question_mark_is_never_altered() {
        // tokio-postgres takes the user info up to the first `@` (unencoded `?`, `&`, `=` are the
        // password's), then the host, the path and only then the query.
        let failures = check(&[
            // The query is after the `@`: pool_size must be taken out, the password left.
            ("postgres://u:p?ss@h/db?pool_size=4", Ok(("postgres://u:p?ss@h/db", Some(4)))),
            // No query at all for the driver: the password is `a?pool_size=9&b`.
            ("postgres://u:a?pool_size=9&b@h/db", Ok(("postgres://u:a?pool_size=9&b@h/db", None))),
            ("postgres://u:a?pool_size=zz@h/db", Ok(("postgres://u:a?pool_size=zz@h/db", None))),
            (
                "postgres://u:a?pool_size=9&b@h/db?sslmode=disable&pool_size=3",
                Ok(("postgres://u:a?pool_size=9&b@h/db?sslmode=disable", Some(3))),
            ),
        ]);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn url_percent_encoded_key_is_read_as_the_driver_reads_it() {
        // The driver percent-decodes keys and values: `pool%5Fsize` is `pool_size` to it. Passed
        // through untouched it reaches the driver as an unknown option; the engine should take
        // it (or refuse it) as it does `pool_size`.
        for url in [
            "postgres://h/db?pool%5Fsize=4",
            "postgres://h/db?pool%5fsize=4",
            "postgres://h/db?%70ool_size=4",
        ] {
            match split_pool_size(url) {
                Ok((rest, Some(4))) => assert_eq!(rest, "postgres://h/db", "{url}"),
                Err(e) => assert!(e.contains("pool_size"), "{url}: {e}"),
                other => panic!("{url}: the driver reads `pool_size` here; got {other:?}"),
            }
        }
        // An encoded value: 4 to the driver. Taken as 4 or refused, never passed on.
        match split_pool_size("postgres://h/db?pool_size=%34") {
            Ok((rest, Some(4))) => assert_eq!(rest, "postgres://h/db"),
            Err(e) => assert!(e.contains("pool_size"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_value_whitespace_quotes_backslashes_non_ascii() {
        let failures = check(&[
            ("host=h\tpool_size=3\npassword=x", Ok(("host=h password=x", Some(3)))),
            ("\r\n host=h \t pool_size \t = \t 7 \r\n", Ok(("host=h", Some(7)))),
            ("host=h pool_size='3'", Ok(("host=h", Some(3)))),
            ("host=h pool_size=\\3", Ok(("host=h", Some(3)))),
            ("host=h pool_size='3 '", Err(())),
            ("host=h pool_size=''", Err(())),
            ("host=h pool_size=3x", Err(())),
            ("password='p\\\\' pool_size=3", Ok(("password='p\\\\'", Some(3)))),
            ("password='p\\\\\\' pool_size=3' host=h", Ok(("password='p\\\\\\' pool_size=3' host=h", None))),
            ("password=p\\'x pool_size=3", Ok(("password=p\\'x", Some(3)))),
            ("password='' pool_size=3", Ok(("password=''", Some(3)))),
            ("password=pässwörd\u{1F600} pool_size=3", Ok(("password=pässwörd\u{1F600}", Some(3)))),
            ("password='ä pool_size=9 ö' pool_size=3", Ok(("password='ä pool_size=9 ö'", Some(3)))),
            ("password=\\é pool_size=3", Ok(("password=\\é", Some(3)))),
            ("pool_size=3 pool_size=4 host=h", Ok(("host=h", Some(4)))),
            ("pool_size=3 pool_size=0 host=h", Err(())),
            ("host=h pool_size=", Err(())),
            // `\'` is an escaped quote: the value is never closed, so the string goes whole to the driver.
            ("host=h password='x\\' pool_size=3", Ok(("host=h password='x\\' pool_size=3", None))),
        ]);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn key_value_is_split_where_the_driver_splits_it() {
        // tokio-postgres splits the key-value form at `char::is_whitespace` (Unicode: U+000B
        // vertical tab, U+00A0 no-break space, U+2003 ...), not only ASCII whitespace. Where the
        // engine tokenizes differently, it can take `pool_size=N` out of the middle of what the
        // driver reads as a quoted password.
        let mut failures = Vec::new();
        for sep in ["\u{0b}", "\u{a0}", "\u{2003}", "\u{85}"] {
            let url = format!("host=h{sep}password='p pool_size=3 q=r'");
            // The driver reads: host=h, password="p pool_size=3 q=r". No pool_size.
            let got = split_pool_size(&url);
            if got != Ok((url.clone(), None)) {
                failures.push(format!("separator {sep:?}: {url:?} -> {got:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "the password `p pool_size=3 q=r` was altered:\n{}",
            failures.join("\n")
        );
        // And a pool_size after such a separator is one to the driver: taken out, not passed on.
        let url = "host=h\u{a0}pool_size=3";
        match split_pool_size(url) {
            Ok((rest, Some(3))) => assert_eq!(rest, "host=h"),
            Err(e) => assert!(e.contains("pool_size"), "{e}"),
            other => panic!("{url:?}: the driver reads pool_size=3 here; got {other:?}"),
        }
    }

    #[test]
    fn errors_never_echo_the_password() {
        let secret = "S3cr3t-Pw";
        for url in [
            format!("postgres://u:{secret}@h/db?pool_size=0"),
            format!("postgres://u:{secret}@h/db?pool_size={secret}"),
            format!("postgres://u:{secret}@h/db?pool_size"),
            format!("postgres://u:a?pool_size={secret}@h/db"),
            format!("host=h password={secret} pool_size=999"),
            format!("host=h password='{secret}' pool_size={secret}"),
            format!("host=h password='{secret} x' pool_size='{secret}'"),
        ] {
            if let Err(e) = split_pool_size(&url) {
                assert!(!e.contains(secret), "{url}: the error echoes the password: {e}");
                assert!(!e.contains("S3cr3t"), "{url}: {e}");
            }
        }
    }

    #[test]
    fn very_long_inputs_are_split_and_odd_ones_do_not_panic() {
        let mut url = String::from("postgres://u:pw@h/db?");
        for i in 0..100_000 {
            url.push_str(&format!("k{i}=v&"));
        }
        url.push_str("pool_size=5");
        let started = std::time::Instant::now();
        let (rest, size) = split_pool_size(&url).expect("splits");
        assert_eq!(size, Some(5));
        assert_eq!(rest, url[..url.len() - "&pool_size=5".len()]);
        let kv = format!("host=h password='{}' pool_size=6", "x\\'".repeat(300_000));
        let (rest, size) = split_pool_size(&kv).expect("splits");
        assert_eq!((rest.len(), size), (kv.len() - " pool_size=6".len(), Some(6)));
        let only = "\\".repeat(1_000_001);
        // Neither is a `key = value` string: left whole to the driver, whose error names it.
        assert_eq!(split_pool_size(&only), Ok((only.clone(), None)));
        let quotes = "'".repeat(1_000_001);
        assert_eq!(split_pool_size(&quotes), Ok((quotes.clone(), None)));
        eprintln!("long inputs split in {:?}", started.elapsed());
    }

    #[test]
    fn the_driver_reads_these_strings_as_the_tests_say() {
        // Pins what tokio-postgres itself reads, so the expectations above are the driver's.
        use tokio_postgres::Config;
        let pw = |s: &str| {
            let c: Config = s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"));
            c.get_password().map(|p| String::from_utf8_lossy(p).into_owned())
        };
        assert_eq!(pw("postgres://u:a?pool_size=9&b@h/db").as_deref(), Some("a?pool_size=9&b"));
        assert_eq!(pw("host=h\u{0b}password='p pool_size=3 q=r'").as_deref(), Some("p pool_size=3 q=r"));
        assert_eq!(pw("host=h\u{a0}password='p pool_size=3 q=r'").as_deref(), Some("p pool_size=3 q=r"));
        // Left in, `pool_size` is an unknown option to the driver.
        for s in
            ["postgres://u:p?ss@h/db?pool_size=4", "postgres://h/db?pool%5Fsize=4", "host=h\u{a0}pool_size=3"]
        {
            let e = s.parse::<Config>().expect_err(s);
            let e = format!("{e} {:?}", std::error::Error::source(&e));
            assert!(e.contains("pool_size"), "{s:?}: {e}");
        }
        // The driver reads `postgres://h/db?` and `postgres://h/db` alike (so that one is
        // cosmetic), and percent-decodes values: `pool_size=%34` is 4.
        assert!("postgres://h/db?".parse::<Config>().is_ok());
    }
}
