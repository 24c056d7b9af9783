//! `capture-sim`: a deterministic simulator that attacks the capture stage.
//!
//! One seed is one history: a few engine processes (each its own [`capture_engine::Engine`])
//! share one real ledger (SQLite in memory, or PostgreSQL) and the real connector plugins, and
//! capture and reconcile concurrently as tasks on a single-threaded tokio runtime with a paused
//! clock, against an in-memory model of one platform ([`models`]). Faults come from the seed and
//! are injected by wrappers around the store, the transport and the clock ([`wrappers`],
//! [`faults`]). After every history the invariants are checked against the platform's books and
//! the ledger ([`history`]). The same seed always replays the same history. See README.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use capture_engine::Plugin;
use capture_store::{CaptureStore, PostgresStore, SqliteStore};

pub mod faults;
pub mod history;
pub mod models;
pub mod rng;
pub mod wrappers;

pub use faults::{Counts, Fault};
pub use history::HistoryReport;
pub use models::PlatformKind;

/// Which ledger backend a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A fresh SQLite ledger in memory per history.
    Sqlite,
    /// One PostgreSQL database (a throwaway server), emptied before every history.
    Postgres,
}

/// How histories run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The ledger backend.
    pub store: StoreKind,
    /// One platform for every history, or None: the seed picks (seed mod 5).
    pub platform: Option<PlatformKind>,
    /// Keep a trace of every call.
    pub verbose: bool,
}

impl Options {
    /// SQLite, every platform, no trace.
    pub fn sqlite() -> Options {
        Options { store: StoreKind::Sqlite, platform: None, verbose: false }
    }

    /// The one-line command that replays `seed` with these options.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut cmd = format!("cargo run -p capture-sim -- --seed {seed} --verbose");
        if self.store == StoreKind::Postgres {
            cmd.push_str(" --store postgres");
        }
        if let Some(p) = self.platform {
            cmd.push_str(&format!(" --platform {}", p.name()));
        }
        cmd
    }
}

struct Pg {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn CaptureStore>,
    client: tokio_postgres::Client,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").finish_non_exhaustive()
    }
}

/// What every history of a run shares: the loaded plugins and, for PostgreSQL, the server.
#[derive(Debug)]
pub struct Env {
    plugins: BTreeMap<PlatformKind, Arc<Plugin>>,
    pg: Option<Pg>,
}

/// The folder the plugins are loaded from: `CAPTURE_SIM_PLUGIN_DIR`, else the folder of this
/// executable (`target/<profile>`, or its parent for a test binary in `target/<profile>/deps`).
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAPTURE_SIM_PLUGIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

fn plugin_file(dir: &Path, kind: PlatformKind) -> PathBuf {
    dir.join(format!(
        "{}capture_plugin_{}{}",
        std::env::consts::DLL_PREFIX,
        kind.connector(),
        std::env::consts::DLL_SUFFIX
    ))
}

impl Env {
    /// Loads the five connector plugins (and starts PostgreSQL for [`StoreKind::Postgres`]).
    pub fn new(store: StoreKind) -> Result<Env, String> {
        let dir = plugin_dir();
        let mut plugins = BTreeMap::new();
        for kind in PlatformKind::ALL {
            let file = plugin_file(&dir, kind);
            let plugin = Plugin::load(&file).map_err(|e| {
                format!(
                    "{e}\nbuild the plugins for this profile first: cargo build [--release] -p capture-plugin-optty \
                     -p capture-plugin-bigcommerce -p capture-plugin-medusa -p capture-plugin-wix -p capture-plugin-template"
                )
            })?;
            plugins.insert(kind, Arc::new(plugin));
        }
        let pg = match store {
            StoreKind::Sqlite => None,
            StoreKind::Postgres => Some(Self::postgres()?),
        };
        Ok(Env { plugins, pg })
    }

    fn postgres() -> Result<Pg, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("the PostgreSQL runtime: {e}"))?;
        let (store, client) = rt.block_on(async {
            let url = capture_store::testing::throwaway_postgres().await?;
            let (client, conn) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("capture-sim: the PostgreSQL admin connection ended: {e}");
                }
            });
            // A throwaway database: commits need not wait for the disk (the simulator checks the
            // ledger's logic, not its durability).
            let db: String =
                client.query_one("SELECT current_database()", &[]).await.map_err(|e| e.to_string())?.get(0);
            client
                .batch_execute(&format!("ALTER DATABASE {db} SET synchronous_commit = off"))
                .await
                .map_err(|e| e.to_string())?;
            let store = PostgresStore::connect(&url).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((Arc::new(store) as Arc<dyn CaptureStore>, client))
        })?;
        Ok(Pg { rt, store, client })
    }

    /// The plugin of a platform.
    pub fn plugin(&self, kind: PlatformKind) -> Arc<Plugin> {
        match self.plugins.get(&kind) {
            Some(p) => Arc::clone(p),
            None => panic!("plugin {} was not loaded", kind.connector()),
        }
    }

    /// The store of the next history, and how to call it.
    fn fresh_store(&self) -> Result<(Arc<dyn CaptureStore>, wrappers::Exec), String> {
        match &self.pg {
            None => {
                let s = SqliteStore::in_memory().map_err(|e| e.to_string())?;
                Ok((Arc::new(s), wrappers::Exec::Here))
            }
            Some(pg) => {
                pg.rt.block_on(async {
                    let rows = pg
                        .client
                        .query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'capture_store_schema'", &[])
                        .await
                        .map_err(|e| e.to_string())?;
                    let tables: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                    let deletes: String = tables.iter().map(|t| format!("DELETE FROM {t};")).collect();
                    pg.client.batch_execute(&deletes).await.map_err(|e| e.to_string())?;
                    Ok::<_, String>(())
                })?;
                Ok((Arc::clone(&pg.store), wrappers::Exec::Side(pg.rt.handle().clone())))
            }
        }
    }
}

/// Runs one history on a fresh single-threaded runtime with a paused clock.
pub fn run_history(env: &Env, seed: u64, opts: &Options) -> Result<HistoryReport, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let (store, exec) = env.fresh_store()?;
    Ok(rt.block_on(history::history(env, seed, opts, store, exec)))
}

/// The result of a range of seeds.
#[derive(Debug, Default)]
pub struct RangeReport {
    /// Histories run.
    pub histories: u64,
    /// Faults injected, summed.
    pub counts: Counts,
    /// Seeds whose history broke an invariant, with what broke.
    pub failures: Vec<(u64, Vec<String>)>,
}

/// Runs every seed of `seeds`.
pub fn run_range(env: &Env, seeds: std::ops::Range<u64>, opts: &Options) -> Result<RangeReport, String> {
    let mut out = RangeReport::default();
    for seed in seeds {
        let r = run_history(env, seed, opts)?;
        out.histories += 1;
        out.counts.merge(&r.counts);
        if !r.violations.is_empty() {
            out.failures.push((seed, r.violations));
        }
    }
    Ok(out)
}
