//! Test support (feature `testing`): a throwaway PostgreSQL server and temporary directories.
//!
//! ```toml
//! [dev-dependencies]
//! capture-store = { workspace = true, features = ["testing"] }
//! ```
//!
//! [`throwaway_postgres`] returns the URL of a fresh, empty database. Where it lives:
//!
//! * If [`POSTGRES_URL_ENV`] (`CAPTURE_TEST_POSTGRES_URL`) is set, on that server: the URL must
//!   name a database the user may connect to and have the CREATEDB privilege. Each call creates a
//!   database `t_<pid>_<n>_<time>`; they are left there (drop them with the server).
//! * Otherwise on a private server started once per test process: `initdb` and `pg_ctl` are found
//!   on `PATH` or in `/usr/lib/postgresql/<version>/bin` (the newest); the cluster lives in
//!   `<temp dir>/capture-store-pg-<pid>` (trust authentication, superuser `postgres`, listening on
//!   127.0.0.1 only, on a free port, its socket in the same directory). When the tests run as root
//!   (`id -u` is 0, as in CI containers), `initdb` and `pg_ctl` run as the `postgres` user through
//!   `runuser -u postgres --` and the directory is `chown`ed to it. If the binaries are missing the
//!   call fails with [`NOT_INSTALLED`]; tests should `expect` it so that they fail, never skip.
//!
//! Stopping the private server: Rust runs no destructor for statics at exit, so the server is not
//! tied to a `Drop`. Instead, right after starting it, a small watchdog shell (`sh`, detached
//! from the test's stdio) polls the test process's pid every second; once the process is gone it
//! runs `pg_ctl stop -m immediate` and removes the directory. If the watchdog itself is killed
//! (say the whole process group got SIGKILL), the next call of [`throwaway_postgres`] in any test
//! process cleans up: every `capture-store-pg-<pid>` directory whose pid is no longer alive has its
//! server stopped and is removed before a new server starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Names a PostgreSQL server to use instead of starting one.
pub const POSTGRES_URL_ENV: &str = "CAPTURE_TEST_POSTGRES_URL";

/// The error when no PostgreSQL binaries are found.
pub const NOT_INSTALLED: &str = "PostgreSQL is not installed: apt-get install postgresql";

/// The prefix of the private servers' directories in the temp dir.
const DIR_PREFIX: &str = "capture-store-pg-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique name fragment: pid, a process-wide counter and the clock's nanoseconds.
fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos)
}

/// A fresh empty database; returns its URL (`postgres://postgres@127.0.0.1:<port>/t_…`).
/// See the module docs for where the server comes from.
pub async fn throwaway_postgres() -> Result<String, String> {
    let admin = match std::env::var(POSTGRES_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => tokio::task::spawn_blocking(|| server().map(|s| s.admin_url.clone()))
            .await
            .map_err(|e| format!("starting PostgreSQL: {e}"))??,
    };
    let name = format!("t_{}", unique());
    let client = connect_with_retry(&admin, Duration::from_secs(30)).await?;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|e| format!("CREATE DATABASE {name} on {}: {e}", crate::redact_target(&admin)))?;
    Ok(with_database(&admin, &name))
}

async fn connect_with_retry(url: &str, patience: Duration) -> Result<tokio_postgres::Client, String> {
    let deadline = Instant::now() + patience;
    loop {
        match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                return Ok(client);
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("connecting to {}: {e}", crate::redact_target(url)));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `url` with its database (path) replaced by `db`, keeping any query string.
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], &rest[q..]),
        None => (rest, ""),
    };
    // The authority ends at the first `/` after the user info.
    let authority_start = before_query.rfind('@').map_or(0, |at| at + 1);
    let authority_end =
        before_query[authority_start..].find('/').map_or(before_query.len(), |slash| authority_start + slash);
    format!("{scheme}://{}/{db}{query}", &before_query[..authority_end])
}

/// A private PostgreSQL server for this test process.
#[derive(Debug)]
struct Server {
    admin_url: String,
    /// Kept so the watchdog is never waited for: it outlives this process on purpose.
    _watchdog: Child,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

fn server() -> Result<&'static Server, String> {
    SERVER.get_or_init(start_server).as_ref().map_err(Clone::clone)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The directory holding `initdb` and `pg_ctl`.
fn bin_dir() -> Result<PathBuf, String> {
    let has_both = |d: &Path| executable(&d.join("initdb")) && executable(&d.join("pg_ctl"));
    if let Some(path) = std::env::var_os("PATH")
        && let Some(d) = std::env::split_paths(&path).find(|d| has_both(d))
    {
        return Ok(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().split('.').next()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d).ok_or_else(|| NOT_INSTALLED.to_owned())
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root.
fn pg_command(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if proc.is_dir() {
        return proc.join(pid.to_string()).exists();
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops and removes the servers of test processes that are gone.
fn clean_stale(bin: &Path, root: bool) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(DIR_PREFIX).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        let data = e.path().join("data");
        if data.join("postmaster.pid").exists() {
            let mut stop = pg_command(root, &bin.join("pg_ctl"));
            stop.arg("stop")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = run(stop, "pg_ctl stop (stale)");
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| format!("finding a free port: {e}"))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    text[start..].to_owned()
}

fn start_server() -> Result<Server, String> {
    let bin = bin_dir()?;
    let root = is_root();
    clean_stale(&bin, root);
    let base = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
    let data = base.join("data");
    let log = base.join("server.log");
    if root {
        let mut chown = Command::new("chown");
        chown.arg("-R").arg("postgres:postgres").arg(&base);
        run(chown, "chown the PostgreSQL directory to postgres")?;
    }
    let mut initdb = pg_command(root, &bin.join("initdb"));
    initdb.arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-locale",
        "--no-sync",
    ]);
    run(initdb, "initdb")?;
    let pg_ctl = bin.join("pg_ctl");
    let mut last = String::new();
    let mut port = 0;
    for _ in 0..5 {
        port = free_port()?;
        let options =
            format!("-p {port} -k '{}' -c listen_addresses=127.0.0.1 -c max_connections=300", base.display());
        let mut start = pg_command(root, &pg_ctl);
        start.arg("-D").arg(&data).arg("-l").arg(&log).args(["-w", "-t", "60", "-o", &options, "start"]);
        match run(start, "pg_ctl start") {
            Ok(()) => {
                last.clear();
                break;
            }
            // Most likely the port was taken between finding it and binding it: try another.
            Err(e) => last = format!("{e}\nserver log:\n{}", log_tail(&log)),
        }
    }
    if !last.is_empty() {
        return Err(last);
    }
    let watchdog = spawn_watchdog(&base, &pg_ctl, root)?;
    Ok(Server { admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), _watchdog: watchdog })
}

/// Stops the server and removes its directory once this process is gone (see the module docs).
fn spawn_watchdog(base: &Path, pg_ctl: &Path, root: bool) -> Result<Child, String> {
    const SCRIPT: &str = r#"
while kill -0 "$0" 2>/dev/null; do sleep 1; done
if [ "$3" = 1 ]; then
    runuser -u postgres -- "$2" stop -D "$1/data" -m immediate
else
    "$2" stop -D "$1/data" -m immediate
fi >/dev/null 2>&1
rm -rf "$1"
"#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg(std::process::id().to_string())
        .arg(base)
        .arg(pg_ctl)
        .arg(if root { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the PostgreSQL watchdog: {e}"))
}

/// A directory under the temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<temp dir>/capture-store-<label>-<unique>`.
    pub fn new(label: &str) -> Result<TempDir, String> {
        let path = std::env::temp_dir().join(format!("capture-store-{label}-{}", unique()));
        std::fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(with_database("postgres://u:p@h:5432/postgres", "t_1"), "postgres://u:p@h:5432/t_1");
        assert_eq!(with_database("postgres://u@h:5432", "t_1"), "postgres://u@h:5432/t_1");
        assert_eq!(
            with_database("postgresql://u:p/w@h/db?sslmode=disable", "t_1"),
            "postgresql://u:p/w@h/t_1?sslmode=disable"
        );
    }
}
