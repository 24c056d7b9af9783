//! The PostgreSQL backend: tokio-postgres without TLS, a small pool of clients, an advisory lock
//! per order for `reserve` and resends, `SELECT … FOR UPDATE` for compare-and-set.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use capture_core::Timestamp;
use sha2::{Digest, Sha256};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::logic::{self, COLUMNS, Plan, RawRow, Stored};
use crate::redact::{redact_target, scrub, url_password};
use crate::{Attempt, AttemptState, AttemptUpdate, CaptureStore, NewAttempt, Reservation, StoreError};

/// Clients per store; each is used by one call at a time.
const POOL_SIZE: usize = 4;
/// How many times a transaction that lost a race (serialization failure, deadlock, unique
/// violation by a concurrent insert) is run again.
const MAX_RETRIES: u32 = 8;
/// The schema version this build writes.
const SCHEMA_VERSION: i32 = 1;
/// Serializes schema creation between processes connecting at once (an arbitrary constant).
const SCHEMA_LOCK: i64 = 0x6361_7074_7572_6531;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS capture_store_schema (version INTEGER NOT NULL);
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
    bound_minor         BIGINT  NOT NULL,
    state               TEXT    NOT NULL CHECK (state IN
                            ('reserved','sent','captured','pending','failed','unknown','already_captured')),
    resendable          BOOLEAN NOT NULL DEFAULT FALSE,
    platform_capture_id TEXT,
    request             TEXT,
    response            TEXT,
    outcome             TEXT,
    sends               BIGINT  NOT NULL DEFAULT 0 CHECK (sends >= 0),
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
    id_owner: Statement,
    order: Statement,
    lock: Statement,
    insert: Statement,
    update: Statement,
    unresolved: Statement,
    all: Statement,
}

struct PgConn {
    client: Client,
    st: Statements,
}

/// The ledger in a PostgreSQL database, shared by any number of engine processes.
pub struct PostgresStore {
    config: Config,
    /// The URL with its password redacted, for messages.
    target: String,
    /// The password as written, for scrubbing messages we do not control.
    secrets: Vec<String>,
    slots: Vec<Mutex<Option<PgConn>>>,
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

/// The advisory-lock key of a (merchant, platform, order): 64 bits of SHA-256 over the
/// length-prefixed parts, so no two orders share a key by construction of the text.
fn order_lock_key(merchant: &str, platform: &str, order_id: &str) -> i64 {
    let mut h = Sha256::new();
    for part in [merchant, platform, order_id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    i64::from_be_bytes(first)
}

fn raw(row: &tokio_postgres::Row) -> Result<RawRow, tokio_postgres::Error> {
    Ok(RawRow {
        id: row.try_get(0)?,
        merchant: row.try_get(1)?,
        platform: row.try_get(2)?,
        idempotency_key: row.try_get(3)?,
        fingerprint: row.try_get(4)?,
        order_id: row.try_get(5)?,
        payment_ids: row.try_get(6)?,
        amount_minor: row.try_get(7)?,
        currency: row.try_get(8)?,
        bound_minor: row.try_get(9)?,
        state: row.try_get(10)?,
        resendable: row.try_get(11)?,
        platform_capture_id: row.try_get(12)?,
        request: row.try_get(13)?,
        response: row.try_get(14)?,
        outcome: row.try_get(15)?,
        sends: row.try_get(16)?,
        created_at: row.try_get(17)?,
        updated_at: row.try_get(18)?,
    })
}

fn decode(row: &tokio_postgres::Row) -> Result<Stored, Fail> {
    Ok(raw(row)?.decode()?)
}

fn decode_all(rows: &[tokio_postgres::Row]) -> Result<Vec<Stored>, Fail> {
    rows.iter().map(decode).collect()
}

impl PostgresStore {
    /// Connects (no TLS), creates the schema if missing and checks its version. The URL's password
    /// never appears in an error.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let target = redact_target(url);
        let mut secrets = url_password(url);
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
            slots: (0..POOL_SIZE).map(|_| Mutex::new(None)).collect(),
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
        let tx = client.transaction().await.map_err(|e| self.err(&e))?;
        // Two processes creating the same tables at once can collide in the catalog even with
        // IF NOT EXISTS; the lock makes them take turns.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await.map_err(|e| self.err(&e))?;
        tx.batch_execute(SCHEMA).await.map_err(|e| self.err(&e))?;
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
        Ok(Statements {
            by_key: p(select("merchant = $1 AND platform = $2 AND idempotency_key = $3")).await?,
            by_id: p(select("id = $1")).await?,
            by_id_for_update: p(select("id = $1 FOR UPDATE")).await?,
            id_owner: p("SELECT idempotency_key FROM capture_attempts WHERE id = $1".into()).await?,
            order: p(many("merchant = $1 AND platform = $2 AND order_id = $3")).await?,
            lock: p("SELECT pg_advisory_xact_lock($1)".into()).await?,
            insert: p(format!(
                "INSERT INTO capture_attempts ({COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
            ))
            .await?,
            update: p("UPDATE capture_attempts SET state = $2, resendable = $3, platform_capture_id = $4, \
                 request = $5, response = $6, outcome = $7, sends = $8, updated_at = $9 WHERE id = $1"
                .into())
            .await?,
            unresolved: p(many("state IN ('reserved', 'sent', 'pending', 'unknown')")).await?,
            all: p(many("TRUE")).await?,
        })
    }

    /// A free client if there is one (else the next in turn), connected (again) if needed.
    async fn conn(&self) -> Result<MappedMutexGuard<'_, PgConn>, StoreError> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let free = (0..n).find_map(|i| self.slots[(start + i) % n].try_lock().ok());
        let mut guard = match free {
            Some(g) => g,
            None => self.slots[start].lock().await,
        };
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = None;
            let client = self.connect_client().await?;
            let st = self.prepare(&client).await?;
            *guard = Some(PgConn { client, st });
        }
        MutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| StoreError::Database("postgres: no connection".into()))
    }

    async fn reserve_once(&self, new: &NewAttempt) -> Result<Reservation, Fail> {
        let mut conn = self.conn().await?;
        let PgConn { client, st } = &mut *conn;
        let tx = client.transaction().await?;
        // Reservations of the same key serialize first (whatever order they name), then every
        // writer of this order takes the same lock, in every process, until its commit. Always in
        // this order (key, then order); transitions take only the order lock: no cycle.
        let key_lock =
            order_lock_key(&new.merchant, &new.platform, &format!("key\u{0}{}", new.idempotency_key));
        tx.execute(&st.lock, &[&key_lock]).await?;
        let key = order_lock_key(&new.merchant, &new.platform, &new.order_id);
        tx.execute(&st.lock, &[&key]).await?;
        let by_key = tx.query_opt(&st.by_key, &[&new.merchant, &new.platform, &new.idempotency_key]).await?;
        if let Some(row) = by_key {
            return Ok(logic::plan_existing_key(new, decode(&row)?));
        }
        let id_owner: Option<String> = match tx.query_opt(&st.id_owner, &[&new.id]).await? {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        };
        let order = decode_all(&tx.query(&st.order, &[&new.merchant, &new.platform, &new.order_id]).await?)?;
        match logic::plan_new(new, id_owner, &order)? {
            Plan::Answer(answer) => Ok(answer),
            Plan::Insert(stored) => {
                let r = RawRow::encode(&stored)?;
                // A concurrent reservation of the same key for another order holds another lock:
                // the UNIQUE constraint stops one of them, which then retries and sees the key.
                tx.execute(
                    &st.insert,
                    &[
                        &r.id,
                        &r.merchant,
                        &r.platform,
                        &r.idempotency_key,
                        &r.fingerprint,
                        &r.order_id,
                        &r.payment_ids,
                        &r.amount_minor,
                        &r.currency,
                        &r.bound_minor,
                        &r.state,
                        &r.resendable,
                        &r.platform_capture_id,
                        &r.request,
                        &r.response,
                        &r.outcome,
                        &r.sends,
                        &r.created_at,
                        &r.updated_at,
                    ],
                )
                .await?;
                tx.commit().await?;
                Ok(Reservation::Reserved(stored.attempt))
            }
        }
    }

    async fn transition_once(
        &self,
        id: &str,
        from: &[AttemptState],
        to: AttemptState,
        update: AttemptUpdate,
        now: Timestamp,
    ) -> Result<Attempt, Fail> {
        let mut conn = self.conn().await?;
        let PgConn { client, st } = &mut *conn;
        let tx = client.transaction().await?;
        // The row lock makes the compare-and-set atomic: a concurrent transition waits, then
        // reads the state this one wrote.
        let row = tx.query_opt(&st.by_id_for_update, &[&id]).await?;
        let current = decode(&row.ok_or_else(|| StoreError::NotFound(id.to_owned()))?)?;
        let (next, needs_check) = logic::plan_transition(current, from, to, update, now)?;
        if needs_check {
            let a = &next.attempt;
            tx.execute(&st.lock, &[&order_lock_key(&a.merchant, &a.platform, &a.order_id)]).await?;
            let order = decode_all(&tx.query(&st.order, &[&a.merchant, &a.platform, &a.order_id]).await?)?;
            logic::check_resend(&next, &order)?;
        }
        let r = RawRow::encode(&next)?;
        let changed = tx
            .execute(
                &st.update,
                &[
                    &r.id,
                    &r.state,
                    &r.resendable,
                    &r.platform_capture_id,
                    &r.request,
                    &r.response,
                    &r.outcome,
                    &r.sends,
                    &r.updated_at,
                ],
            )
            .await?;
        if changed != 1 {
            return Err(
                StoreError::Database(format!("postgres: updating {id} changed {changed} rows")).into()
            );
        }
        tx.commit().await?;
        Ok(next.attempt)
    }

    async fn read(
        &self,
        pick: impl FnOnce(&Statements) -> (&Statement, Vec<String>),
    ) -> Result<Vec<Stored>, StoreError> {
        let conn = self.conn().await?;
        let (stmt, args) = pick(&conn.st);
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        let rows = conn.client.query(stmt, &params).await.map_err(|e| self.err(&e))?;
        decode_all(&rows).map_err(|f| self.fail(f))
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
        from: &[AttemptState],
        to: AttemptState,
        update: AttemptUpdate,
        now: Timestamp,
    ) -> Result<Attempt, StoreError> {
        retrying(self, || self.transition_once(id, from, to, update.clone(), now)).await
    }

    async fn get(&self, id: &str) -> Result<Option<Attempt>, StoreError> {
        Ok(self.read(|st| (&st.by_id, vec![id.to_owned()])).await?.into_iter().next().map(|s| s.attempt))
    }

    async fn by_key(&self, merchant: &str, platform: &str, key: &str) -> Result<Option<Attempt>, StoreError> {
        let args = vec![merchant.to_owned(), platform.to_owned(), key.to_owned()];
        Ok(self.read(|st| (&st.by_key, args)).await?.into_iter().next().map(|s| s.attempt))
    }

    async fn unresolved(&self) -> Result<Vec<Attempt>, StoreError> {
        Ok(attempts(self.read(|st| (&st.unresolved, Vec::new())).await?))
    }

    async fn order_attempts(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Vec<Attempt>, StoreError> {
        let args = vec![merchant.to_owned(), platform.to_owned(), order_id.to_owned()];
        Ok(attempts(self.read(|st| (&st.order, args)).await?))
    }

    async fn all(&self) -> Result<Vec<Attempt>, StoreError> {
        Ok(attempts(self.read(|st| (&st.all, Vec::new())).await?))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
