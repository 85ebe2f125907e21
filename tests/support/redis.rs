//! Redis for tests: the shared one at `REDIS_URL` (default
//! redis://127.0.0.1:6379), or a private `redis-server` a test can kill.
//! Each use gets a key prefix of its own.
//!
//! When Redis cannot be reached the test prints a loud SKIPPED line and
//! passes, unless `CI` is set: there, a missing Redis fails the test.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vehicle_allocation::cache::{CacheConfig, RedisConfig};

/// A key prefix no other test (or run) uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "va-test:{}:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Skips (or, under CI, fails) a test that needs Redis.
pub fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("Redis is required under CI: {why}");
    }
    let _ = writeln!(std::io::stderr(), "\nSKIPPED: Redis cache tests ({why})\n");
}

/// The shared Redis's URL, if it answers a PING.
pub fn shared_url() -> Option<String> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).ok()?;
    let mut connection = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    let pong: String = redis::cmd("PING").query(&mut connection).ok()?;
    (pong == "PONG").then_some(url)
}

/// A cache configuration on Redis at `url`, with a fresh prefix.
pub fn cache_config(url: &str) -> CacheConfig {
    CacheConfig {
        redis: Some(RedisConfig {
            url: url.to_owned(),
            pool_size: 8,
            timeout: Duration::from_millis(200),
            // Tests retry Redis at once rather than wait out a backoff.
            retry_backoff: Duration::ZERO,
        }),
        prefix: unique_prefix(),
        ..CacheConfig::default()
    }
}

/// A `redis-server` of the test's own, on a unix socket in a directory of
/// its own: no TCP port to pick (picking a free one and handing it over is
/// a race with every other process), and a restart finds its address still
/// free.
pub struct PrivateRedis {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

#[allow(dead_code)]
impl PrivateRedis {
    /// Starts one; `None` (after a SKIPPED line) without `redis-server`.
    pub fn start() -> Option<Self> {
        let dir = tempfile::tempdir().expect("a directory for the socket");
        let mut redis = Self { dir, child: None };
        if redis.restart() { Some(redis) } else { None }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// (Re)starts the server on the same socket and waits until it accepts
    /// connections, by reading its log rather than by polling.
    pub fn restart(&mut self) -> bool {
        let spawned = Command::new("redis-server")
            // Port 0 turns TCP off. A socket left by a killed server is
            // removed by the next one.
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                skip(&format!("cannot start redis-server: {error}"));
                return false;
            }
        };
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut log = Vec::new();
        for line in stdout.lines().map_while(Result::ok) {
            // "The server is now ready to accept connections at <socket>"
            // up to Redis 7.0, "Ready to accept connections unix" since 7.2.
            if line
                .to_ascii_lowercase()
                .contains("ready to accept connections")
            {
                self.child = Some(child);
                return true;
            }
            log.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "redis-server on {} did not start:\n{}",
            self.socket().display(),
            log.join("\n")
        );
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Kills the server, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
