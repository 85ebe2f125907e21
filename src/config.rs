//! Configuration: command-line flags, each with an environment variable, and
//! a `.env` file read before either.
//!
//! Values are parsed and checked here, so a bad value stops the process at
//! startup with a message naming the flag and its variable, rather than
//! failing later in a request.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::auth::AuthSettings;
use crate::auth::jwt::{JwtConfig, KeySource};
use crate::auth::rate::RateLimit;
use crate::cache::{CacheConfig, RedisConfig};
use crate::domain::BookingPolicy;
use crate::domain::access::Role;
use crate::gateway::UpstreamTls;
use crate::gateway::{CorsOrigins, GatewayConfig};
use crate::grpc::events::EventSettings;
use crate::server::ServerLimits;
use crate::storage::StoreConfig;
use crate::storage::mongo::MongoConfig;
use crate::telemetry::LogFormat;
use crate::tls::TlsSettings;

/// Book a company vehicle for a day: a gRPC service on an embedded store.
#[derive(Debug, Parser)]
#[command(
    name = "vehicle-allocation",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `serve`, which is what runs when no command is given.
    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server and the REST gateway (the default).
    Serve(Box<ServeArgs>),
    /// Fill the store with realistic fake employees, vehicles and bookings.
    Seed(SeedArgs),
    /// Create or update employees, drivers and vehicles from CSV or JSON
    /// Lines files: all rows or none.
    Import(ImportArgs),
    /// Answer an erasure request (GDPR Art. 17): replace an employee's name
    /// and e-mail with a pseudonym in their record and every stored event,
    /// and deactivate them. With the embedded store, stop the service first
    /// (it holds the data directory); with MongoDB it may keep running.
    EraseEmployee(EraseEmployeeArgs),
    /// Ask a running server's gRPC health service whether it is SERVING;
    /// exits 0 if so (for container health checks).
    HealthCheck(HealthCheckArgs),
    /// Print an HS256 token for trying the API (needs AUTH_JWT_HS256_SECRET).
    Token(TokenArgs),
}

/// Options of `token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The employee the token speaks for.
    #[arg(long)]
    pub employee: String,
    /// A role the token grants (employee, booking_agent, auditor,
    /// fleet_admin); repeat for several.
    #[arg(long = "role", required = true, value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// How long the token is valid, e.g. 8h, 30m, 3600s or 1d.
    #[arg(long, default_value = "8h", value_parser = parse_ttl)]
    pub ttl: Duration,
    #[command(flatten)]
    pub jwt: JwtArgs,
}

/// How bearer tokens are verified (and, for `token`, signed).
#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// Shared secret for HS256 tokens, for development and tests; never
    /// together with a JWKS.
    #[arg(long, env = "AUTH_JWT_HS256_SECRET", hide_env_values = true,
          conflicts_with_all = ["auth_jwt_jwks_file", "auth_jwt_jwks_url"],
          value_parser = parse_secret)]
    pub auth_jwt_hs256_secret: Option<String>,

    /// A JWKS document on disk with the RS256, ES256 or EdDSA keys tokens
    /// are signed with (re-read on SIGHUP).
    #[arg(long, env = "AUTH_JWT_JWKS_FILE", conflicts_with = "auth_jwt_jwks_url")]
    pub auth_jwt_jwks_file: Option<PathBuf>,

    /// The URL of the identity provider's JWKS (fetched at startup, then
    /// every AUTH_JWT_JWKS_REFRESH seconds, and when a token names an
    /// unknown key).
    #[arg(long, env = "AUTH_JWT_JWKS_URL")]
    pub auth_jwt_jwks_url: Option<String>,

    /// Seconds between fetches of AUTH_JWT_JWKS_URL.
    #[arg(long, env = "AUTH_JWT_JWKS_REFRESH", default_value = "300", value_parser = parse_seconds)]
    pub auth_jwt_jwks_refresh: Duration,

    /// The `iss` tokens must carry, when set.
    #[arg(long, env = "AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,

    /// The `aud` tokens must carry, when set.
    #[arg(long, env = "AUTH_JWT_AUDIENCE")]
    pub auth_jwt_audience: Option<String>,

    /// The claim naming the employee the caller is.
    #[arg(long, env = "AUTH_EMPLOYEE_CLAIM", default_value = "sub")]
    pub auth_employee_claim: String,

    /// The claim listing the caller's roles.
    #[arg(long, env = "AUTH_ROLES_CLAIM", default_value = "roles")]
    pub auth_roles_claim: String,
}

impl JwtArgs {
    /// The token configuration, if tokens are configured.
    pub fn config(&self) -> Option<JwtConfig> {
        let keys = if let Some(secret) = &self.auth_jwt_hs256_secret {
            KeySource::Hs256(secret.clone())
        } else if let Some(path) = &self.auth_jwt_jwks_file {
            KeySource::JwksFile(path.clone())
        } else if let Some(url) = &self.auth_jwt_jwks_url {
            KeySource::JwksUrl(url.clone())
        } else {
            return None;
        };
        Some(JwtConfig {
            keys,
            issuer: self.auth_jwt_issuer.clone(),
            audience: self.auth_jwt_audience.clone(),
            employee_claim: self.auth_employee_claim.clone(),
            roles_claim: self.auth_roles_claim.clone(),
            jwks_refresh: self.auth_jwt_jwks_refresh,
        })
    }
}

/// Who may call, and how often.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    #[command(flatten)]
    pub jwt: JwtArgs,

    /// A TOML file of `[[key]]` entries (name, sha256, roles) for internal
    /// services' API keys and `[[client_cert]]` entries (name, roles);
    /// re-read on SIGHUP.
    #[arg(long, env = "AUTH_API_KEYS_FILE")]
    pub auth_api_keys_file: Option<PathBuf>,

    /// Serve without authentication on a non-loopback address (every caller
    /// then acts as an anonymous fleet_admin).
    #[arg(long, env = "ALLOW_UNAUTHENTICATED", default_value_t = false, action = ArgAction::Set)]
    pub allow_unauthenticated: bool,

    /// Requests per second each caller may make; off when unset.
    #[arg(long, env = "RATE_LIMIT_PER_SECOND")]
    pub rate_limit_per_second: Option<NonZeroU32>,

    /// Requests a caller may make at once above the rate (default: the
    /// rate).
    #[arg(long, env = "RATE_LIMIT_BURST", requires = "rate_limit_per_second")]
    pub rate_limit_burst: Option<NonZeroU32>,
}

impl AuthArgs {
    pub fn settings(&self) -> AuthSettings {
        AuthSettings {
            jwt: self.jwt.config(),
            api_keys_file: self.auth_api_keys_file.clone(),
            allow_unauthenticated: self.allow_unauthenticated,
            rate_limit: self.rate_limit_per_second.map(|per_second| RateLimit {
                per_second,
                burst: self.rate_limit_burst.unwrap_or(per_second),
            }),
        }
    }
}

/// TLS on the listeners, and towards a gRPC upstream.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// PEM certificate chain: serve gRPC and REST over TLS.
    #[arg(long, env = "TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// PEM CA: require gRPC clients to present a certificate it issued
    /// (mTLS); the certificate's first DNS name (or CN) is the caller.
    #[arg(long, env = "TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// Require client certificates on REST too.
    #[arg(long, env = "TLS_CLIENT_AUTH_HTTP", default_value_t = false, action = ArgAction::Set,
          requires = "tls_client_ca_file")]
    pub tls_client_auth_http: bool,

    /// PEM CA that the https gRPC upstream's certificate must chain to
    /// (default: the system's roots).
    #[arg(long, env = "GRPC_UPSTREAM_CA_FILE")]
    pub grpc_upstream_ca_file: Option<PathBuf>,

    /// PEM client certificate to present to the gRPC upstream.
    #[arg(
        long,
        env = "GRPC_UPSTREAM_CERT_FILE",
        requires = "grpc_upstream_key_file"
    )]
    pub grpc_upstream_cert_file: Option<PathBuf>,

    /// PEM key of GRPC_UPSTREAM_CERT_FILE.
    #[arg(
        long,
        env = "GRPC_UPSTREAM_KEY_FILE",
        requires = "grpc_upstream_cert_file"
    )]
    pub grpc_upstream_key_file: Option<PathBuf>,
}

impl TlsArgs {
    pub fn settings(&self) -> Option<TlsSettings> {
        Some(TlsSettings {
            cert_file: self.tls_cert_file.clone()?,
            key_file: self.tls_key_file.clone()?,
            client_ca_file: self.tls_client_ca_file.clone(),
            client_auth_http: self.tls_client_auth_http,
        })
    }

    pub fn upstream(&self) -> UpstreamTls {
        UpstreamTls {
            ca_file: self.grpc_upstream_ca_file.clone(),
            identity: self
                .grpc_upstream_cert_file
                .clone()
                .zip(self.grpc_upstream_key_file.clone()),
        }
    }
}

/// Options of `health-check`.
#[derive(Debug, Clone, Args)]
pub struct HealthCheckArgs {
    /// The server's gRPC address; an unspecified IP (0.0.0.0) means this
    /// host.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// Seconds to wait for an answer.
    #[arg(long, default_value = "3", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Directory of the embedded store.
    #[arg(long, env = "DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// IANA time zone in which "today" is reckoned, e.g. Europe/Berlin.
    #[arg(long, env = "ORG_TIMEZONE", default_value = "UTC", value_parser = parse_time_zone, global = true)]
    pub org_timezone: Tz,

    /// How many days ahead of today a vehicle can be booked.
    #[arg(long, env = "MAX_DAYS_AHEAD", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(0..=3660), global = true)]
    pub max_days_ahead: u32,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Use MongoDB at this connection string instead of the embedded store,
    /// e.g. mongodb://mongo:27017/?replicaSet=rs0 (a replica set: bookings
    /// are written in transactions).
    #[arg(long, env = "MONGODB_URL", global = true, hide_env_values = true)]
    pub mongodb_url: Option<String>,

    /// The MongoDB database.
    #[arg(
        long,
        env = "MONGODB_DATABASE",
        default_value = "vehicle_allocation",
        global = true
    )]
    pub mongodb_database: String,

    /// Connections to MongoDB per process, at most.
    #[arg(long, env = "MONGODB_MAX_POOL_SIZE", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub mongodb_max_pool_size: u32,

    /// Seconds to wait for a connection to a MongoDB server.
    #[arg(long, env = "MONGODB_CONNECT_TIMEOUT", default_value = "5", value_parser = parse_seconds, global = true)]
    pub mongodb_connect_timeout: Duration,

    /// Seconds to wait for a usable MongoDB server (e.g. a primary) before a
    /// request fails with UNAVAILABLE.
    #[arg(long, env = "MONGODB_SERVER_SELECTION_TIMEOUT", default_value = "5", value_parser = parse_seconds, global = true)]
    pub mongodb_server_selection_timeout: Duration,

    /// Cache in Redis at this URL (e.g. redis://redis:6379), shared by every
    /// replica; without it the cache is in-process.
    #[arg(long, env = "REDIS_URL", global = true, hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Seconds a cache entry lives at most; 0 turns the cache off.
    #[arg(long, env = "CACHE_TTL", default_value = "300", value_parser = parse_seconds_or_zero, global = true)]
    pub cache_ttl: Duration,

    /// Prefix of every Redis key, to share one Redis between deployments.
    #[arg(
        long,
        env = "CACHE_PREFIX",
        default_value = "vehicle-allocation:v1",
        global = true
    )]
    pub cache_prefix: String,

    /// Size limit of the in-process cache, in MiB.
    #[arg(long, env = "CACHE_MEMORY_MB", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=65_536), global = true)]
    pub cache_memory_mb: u64,

    /// Connections to Redis per process; each carries many calls at once.
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub redis_pool_size: u32,

    /// Milliseconds a Redis call may take before the store answers instead.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=60_000), global = true)]
    pub redis_timeout_ms: u64,
}

impl CommonArgs {
    /// The store these options choose: MongoDB when a URL is given.
    pub fn store(&self) -> StoreConfig {
        match &self.mongodb_url {
            Some(url) => StoreConfig::Mongo(MongoConfig {
                url: url.clone(),
                database: self.mongodb_database.clone(),
                max_pool_size: self.mongodb_max_pool_size,
                connect_timeout: self.mongodb_connect_timeout,
                server_selection_timeout: self.mongodb_server_selection_timeout,
            }),
            None => StoreConfig::Embedded {
                data_dir: self.data_dir.clone(),
            },
        }
    }

    /// The cache these options choose: Redis when a URL is given.
    pub fn cache(&self) -> CacheConfig {
        CacheConfig {
            redis: self.redis_url.as_ref().map(|url| RedisConfig {
                url: url.clone(),
                pool_size: self.redis_pool_size,
                timeout: Duration::from_millis(self.redis_timeout_ms),
                ..RedisConfig::default()
            }),
            ttl: self.cache_ttl,
            prefix: self.cache_prefix.clone(),
            memory_bytes: self.cache_memory_mb * 1024 * 1024,
            ..CacheConfig::default()
        }
    }

    /// The booking rules these options set.
    pub fn policy(&self) -> BookingPolicy {
        BookingPolicy {
            time_zone: self.org_timezone,
            max_days_ahead: self.max_days_ahead,
        }
    }
}

/// Options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// Address the REST gateway listens on.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Run only the REST gateway, onto this remote gRPC server
    /// (e.g. http://10.0.0.5:50051), with no store of its own.
    #[arg(long, env = "GRPC_UPSTREAM", value_parser = parse_upstream)]
    pub grpc_upstream: Option<String>,

    /// Browser origins allowed to call the REST API, comma-separated
    /// (e.g. https://fleet.example.com); `*` for any. Default: none.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "", value_parser = parse_cors_origins)]
    pub cors_allowed_origins: CorsOrigins,

    /// Seconds a REST request may take before it is answered 504.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub http_request_timeout: Duration,

    /// Seed the store with demo data first, if it is empty.
    #[arg(long)]
    pub demo: bool,

    /// Seconds that in-flight requests get to finish on shutdown.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,

    /// Days the audit trail keeps an event; older ones are pruned in the
    /// background.
    #[arg(long, env = "EVENT_RETENTION_DAYS", default_value_t = 730,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub event_retention_days: u32,

    /// Record Prometheus metrics and serve them at `/metrics`.
    #[arg(long, env = "METRICS", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub metrics: bool,

    /// Also serve `/metrics` on this address (e.g. 0.0.0.0:9464), off the
    /// public port. With authentication configured, `/metrics` is served
    /// only here.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Start without SQLite's quick_check of the embedded store (it reads
    /// the whole database; docs/operations.md says how long that takes).
    #[arg(long, env = "SKIP_INTEGRITY_CHECK", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub skip_integrity_check: bool,

    /// Sign page tokens with this secret (at least 32 bytes) instead of the
    /// key the store keeps; every replica must have the same.
    #[arg(long, env = "PAGE_TOKEN_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub page_token_key: Option<String>,

    /// Serve gRPC server reflection (for grpcurl and the like).
    #[arg(long, env = "GRPC_REFLECTION", default_value_t = true, action = ArgAction::Set)]
    pub grpc_reflection: bool,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The servers' limits against floods and stuck clients.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Open connections each listener holds at most; beyond it, new
    /// connections are closed at once.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Requests handled at once (gRPC and REST together); more are refused
    /// with RESOURCE_EXHAUSTED (REST 503) reason OVERLOADED.
    #[arg(long, env = "MAX_IN_FLIGHT_REQUESTS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight_requests: u32,

    /// Requests one caller (an authenticated principal; without
    /// authentication, a peer address) may have in flight; more of its
    /// requests are refused with reason OVERLOADED, so one caller's flood
    /// leaves room for the others. Default: a quarter of
    /// MAX_IN_FLIGHT_REQUESTS.
    #[arg(long, env = "MAX_IN_FLIGHT_PER_CALLER", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight_per_caller: Option<u32>,

    /// Wrong credentials a peer address may present per second (and ten
    /// times as many at once); past that, its tokens that would need a
    /// signature check are answered RATE_LIMITED unchecked (API keys and
    /// tokens verified lately still work).
    #[arg(long, env = "AUTH_FAILURES_PER_SECOND", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failures_per_second: u32,

    /// Event streams (WatchEvents, SSE) open at once; more are refused with
    /// RESOURCE_EXHAUSTED (REST 429) reason TOO_MANY_STREAMS.
    #[arg(long, env = "MAX_WATCH_STREAMS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_watch_streams: u32,

    /// Event streams one caller may have open at once.
    #[arg(long, env = "MAX_WATCH_STREAMS_PER_CALLER", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_watch_streams_per_caller: u32,

    /// Bytes of events an event stream holds ahead of its subscriber.
    #[arg(long, env = "WATCH_BUFFER_BYTES", default_value_t = 32768, value_parser = clap::value_parser!(u32).range(1024..))]
    pub watch_buffer_bytes: u32,

    /// Event streams reading stored events (a replay, or a subscriber
    /// catching up) at once; the others wait their turn.
    #[arg(long, env = "WATCH_REPLAYS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub watch_replays: u32,

    /// HTTP/2 streams a gRPC connection may have open at once.
    #[arg(long, env = "GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_concurrent_streams: u32,

    /// Seconds a gRPC call may run when its caller sets no deadline (a
    /// shorter grpc-timeout is honoured); then DEADLINE_EXCEEDED.
    #[arg(long, env = "GRPC_DEFAULT_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub grpc_default_timeout: Duration,

    /// Seconds between HTTP/2 keepalive pings on an idle connection.
    #[arg(long, env = "GRPC_KEEPALIVE_INTERVAL", default_value = "60", value_parser = parse_seconds)]
    pub grpc_keepalive_interval: Duration,

    /// Seconds a keepalive ping may go unanswered before the connection is
    /// closed as dead.
    #[arg(long, env = "GRPC_KEEPALIVE_TIMEOUT", default_value = "20", value_parser = parse_seconds)]
    pub grpc_keepalive_timeout: Duration,

    /// Seconds a new connection has for its TLS handshake and first request
    /// (gRPC: the HTTP/2 preface), and a REST request for its headers and
    /// body.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub header_read_timeout: Duration,

    /// Seconds a REST connection may stay open with no request in flight,
    /// and an event stream whose subscriber takes nothing.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    pub http_idle_timeout: Duration,
}

impl LimitArgs {
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            max_connections: self.max_connections as usize,
            max_in_flight: self.max_in_flight_requests as usize,
            max_in_flight_per_caller: self.max_in_flight_per_caller.map(|n| n as usize),
            auth_failures: crate::auth::failures::FailureLimit {
                per_second: std::num::NonZeroU32::new(self.auth_failures_per_second)
                    .expect("clap checks the range"),
            },
            max_concurrent_streams: self.grpc_max_concurrent_streams,
            default_deadline: self.grpc_default_timeout,
            keepalive_interval: self.grpc_keepalive_interval,
            keepalive_timeout: self.grpc_keepalive_timeout,
            header_timeout: self.header_read_timeout,
            http_idle_timeout: self.http_idle_timeout,
        }
    }
}

/// Options of `seed`.
#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// Employees to create.
    #[arg(long, default_value_t = 1000)]
    pub employees: usize,
    /// Vehicles to create, each with its own driver.
    #[arg(long, default_value_t = 300)]
    pub vehicles: usize,
    /// Bookings to create, over past and future dates.
    #[arg(long, default_value_t = 5000)]
    pub allocations: usize,
    /// Random seed: the same seed on the same day gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Delete everything in the store first.
    #[arg(long)]
    pub reset: bool,
}

/// Options of `import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Employees: CSV with a header row, or JSON Lines (.jsonl, .ndjson).
    #[arg(long, value_name = "FILE")]
    pub employees: Option<PathBuf>,
    /// Drivers, in the same formats.
    #[arg(long, value_name = "FILE")]
    pub drivers: Option<PathBuf>,
    /// Vehicles with their drivers, in the same formats.
    #[arg(long, value_name = "FILE")]
    pub vehicles: Option<PathBuf>,
    /// Check everything and print what would be created, updated and left
    /// unchanged, writing nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Send the rows to the service running at URL (e.g.
    /// http://127.0.0.1:50051) instead of opening the store: it writes
    /// them, all or none. Credentials come from IMPORT_API_KEY or
    /// IMPORT_BEARER_TOKEN (a fleet_admin's).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Where the service using DATA_DIR listens, when it is running: the
    /// rows are sent to it there.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
}

/// Options of `erase-employee`.
#[derive(Debug, Clone, Args)]
pub struct EraseEmployeeArgs {
    /// The employee's id.
    pub id: String,
    /// Cancel the employee's bookings from today on instead of refusing.
    #[arg(long)]
    pub cancel_conflicting_bookings: bool,
}

/// Everything `serve` needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Gateway-only mode: the remote gRPC server to call.
    pub grpc_upstream: Option<String>,
    pub gateway: GatewayConfig,
    pub store: StoreConfig,
    pub cache: CacheConfig,
    pub policy: BookingPolicy,
    /// Seed an empty store with demo data before serving.
    pub demo: bool,
    /// How long in-flight requests get on shutdown before they are cut off.
    pub shutdown_timeout: Duration,
    /// How often the store is pinged to keep health up to date.
    pub health_check_interval: Duration,
    pub auth: AuthSettings,
    /// TLS on both listeners.
    pub tls: Option<TlsSettings>,
    /// TLS towards an https `grpc_upstream`.
    pub upstream_tls: UpstreamTls,
    /// Serve gRPC server reflection.
    pub reflection: bool,
    /// Connections, requests in flight, deadlines and timeouts.
    pub limits: ServerLimits,
    /// Run SQLite's quick_check on the embedded store before serving.
    pub integrity_check: bool,
    /// Sign page tokens with this secret instead of the key in the store.
    pub page_token_key: Option<String>,
    /// The audit trail's retention and streams.
    pub events: EventSettings,
    pub metrics: MetricsSettings,
}

/// Whether metrics are recorded, and where they are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// A listener of its own for `/metrics`.
    pub addr: Option<SocketAddr>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: None,
        }
    }
}

impl Settings {
    /// Settings from parsed `serve` and common options.
    pub fn new(serve: &ServeArgs, common: &CommonArgs) -> Self {
        Self {
            grpc_addr: serve.grpc_addr,
            http_addr: serve.http_addr,
            grpc_upstream: serve.grpc_upstream.clone(),
            gateway: GatewayConfig {
                request_timeout: serve.http_request_timeout,
                cors: serve.cors_allowed_origins.clone(),
            },
            store: common.store(),
            cache: common.cache(),
            policy: common.policy(),
            demo: serve.demo,
            shutdown_timeout: serve.shutdown_timeout,
            health_check_interval: Duration::from_secs(5),
            events: EventSettings {
                retention: chrono::Duration::days(serve.event_retention_days.into()),
                watch_buffer_bytes: serve.limits.watch_buffer_bytes as usize,
                max_streams: serve.limits.max_watch_streams as usize,
                max_streams_per_caller: serve.limits.max_watch_streams_per_caller as usize,
                replays: serve.limits.watch_replays as usize,
                stall_timeout: serve.limits.http_idle_timeout,
                ..EventSettings::default()
            },
            metrics: MetricsSettings {
                enabled: serve.metrics,
                addr: serve.metrics_addr,
            },
            auth: serve.auth.settings(),
            tls: serve.tls.settings(),
            upstream_tls: serve.tls.upstream(),
            reflection: serve.grpc_reflection,
            limits: serve.limits.limits(),
            integrity_check: !serve.skip_integrity_check,
            page_token_key: serve.page_token_key.clone(),
        }
    }
}

/// An HS256 secret: at least 32 bytes, as RFC 7518 asks of HS256 keys, so
/// that it cannot be guessed.
fn parse_secret(value: &str) -> Result<String, String> {
    if value.len() < 32 {
        return Err(format!(
            "the secret is {} bytes; HS256 needs at least 32 (e.g. `openssl rand -hex 32`)",
            value.len()
        ));
    }
    Ok(value.to_owned())
}

fn parse_role(value: &str) -> Result<Role, String> {
    Role::parse(value).ok_or_else(|| {
        format!("{value:?} is not a role; the roles are employee, booking_agent, auditor and fleet_admin")
    })
}

/// A duration such as 8h, 30m, 3600s or 1d.
pub fn parse_ttl(value: &str) -> Result<Duration, String> {
    let bad = || format!("{value:?} is not a duration such as 8h, 30m, 3600s or 1d");
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" | "" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if seconds == 0 || seconds > 366 * 86_400 {
        return Err(format!("{value:?} must be more than 0 and at most a year"));
    }
    Ok(Duration::from_secs(seconds))
}

fn parse_time_zone(value: &str) -> Result<Tz, String> {
    value.parse::<Tz>().map_err(|_| {
        format!("{value:?} is not an IANA time zone name such as UTC or Europe/Berlin")
    })
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{value:?} is not a positive whole number of seconds"))
}

fn parse_seconds_or_zero(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{value:?} is not a whole number of seconds"))
}

fn parse_upstream(value: &str) -> Result<String, String> {
    let uri: http::Uri = value
        .parse()
        .map_err(|_| format!("{value:?} is not a URL such as http://10.0.0.5:50051"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(value.to_owned()),
        _ => Err(format!(
            "{value:?} is not a URL such as http://10.0.0.5:50051 or https://grpc.internal:50051"
        )),
    }
}

fn parse_cors_origins(value: &str) -> Result<CorsOrigins, String> {
    let origins: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    match origins.as_slice() {
        [] => Ok(CorsOrigins::None),
        ["*"] => Ok(CorsOrigins::Any),
        list => list
            .iter()
            .map(|origin| {
                let uri: http::Uri = origin.parse().map_err(|_| bad_origin(origin))?;
                let shape_ok = matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some()
                    && uri.path() == "/"
                    && !origin.ends_with('/');
                if !shape_ok {
                    return Err(bad_origin(origin));
                }
                http::HeaderValue::from_str(origin).map_err(|_| bad_origin(origin))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(CorsOrigins::List),
    }
}

fn bad_origin(origin: &str) -> String {
    format!("{origin:?} is not an origin such as https://fleet.example.com (or * alone)")
}

/// The tables of docs/configuration.md, rendered from the same clap
/// definitions as `--help`, so the reference cannot drift from the flags
/// (a unit test compares the two).
pub fn reference_markdown() -> String {
    use clap::CommandFactory as _;

    let cli = Cli::command();
    let (every, serve): (Vec<_>, Vec<_>) = shown(&cli).partition(|arg| arg.is_global_set());
    let mut out = String::new();
    table(
        &mut out,
        "Every command",
        "The store, the booking rules and the log format: every command takes these.",
        &every,
    );
    table(
        &mut out,
        "`serve` (the default command)",
        "The listeners, authentication, TLS, limits and telemetry.",
        &serve,
    );
    for sub in cli.get_subcommands() {
        if sub.get_name() == "serve" || sub.is_hide_set() {
            continue;
        }
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        let args: Vec<_> = shown(sub).collect();
        table(
            &mut out,
            &format!("`{}`", sub.get_name()),
            &sentence(&about),
            &args,
        );
    }
    out
}

fn table(out: &mut String, title: &str, about: &str, args: &[&clap::Arg]) {
    use std::fmt::Write as _;
    let _ = write!(out, "\n### {title}\n\n{about}\n\n");
    if args.is_empty() {
        out.push_str("No options of its own.\n");
        return;
    }
    out.push_str("| variable | flag | default | meaning |\n| --- | --- | --- | --- |\n");
    for arg in args {
        let variable = arg
            .get_env()
            .map(|env| format!("`{}`", env.to_string_lossy()))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {variable} | {} | {} | {} |",
            flag(arg),
            default_of(arg),
            meaning(arg),
        );
    }
}

/// The arguments a reader can set: not clap's own `--help`/`--version`.
fn shown(command: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version"))
}

fn flag(arg: &clap::Arg) -> String {
    match arg.get_long() {
        Some(long) => format!("`--{long}`"),
        None => format!("`<{}>`", arg.get_id().as_str().to_uppercase()),
    }
}

fn default_of(arg: &clap::Arg) -> String {
    let values: Vec<_> = arg
        .get_default_values()
        .iter()
        .map(|value| value.to_string_lossy())
        .filter(|value| !value.is_empty())
        .map(|value| format!("`{value}`"))
        .collect();
    values.join(", ")
}

fn meaning(arg: &clap::Arg) -> String {
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut text = sentence(&help);
    let values: Vec<_> = arg
        .get_possible_values()
        .iter()
        .filter(|value| !value.is_hide_set())
        .map(|value| match value.get_help() {
            Some(help) => format!("`{}` ({})", value.get_name(), cell(&help.to_string())),
            None => format!("`{}`", value.get_name()),
        })
        .collect();
    // `true`/`false` say nothing a bool's help does not.
    if !values.is_empty() && arg.get_action().takes_values() && values != ["`true`", "`false`"] {
        text.push_str(&format!(" One of: {}.", values.join(", ")));
    }
    text
}

/// `text` in one cell, ending as a sentence (clap drops the full stop of a
/// one-line help).
fn sentence(text: &str) -> String {
    let mut text = cell(text);
    if !text.is_empty() && !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// Text fit for one table cell: one line, no column breaks.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `args` as the command line, ignoring the environment: the
    /// README tells users to export REDIS_URL and the like.
    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let matches = without_env(Cli::command()).try_get_matches_from(
            std::iter::once("vehicle-allocation").chain(args.iter().copied()),
        )?;
        Cli::from_arg_matches(&matches)
    }

    /// `command` with no argument read from an environment variable.
    fn without_env(command: clap::Command) -> clap::Command {
        let command = command.mut_args(|arg| arg.env(None));
        let names: Vec<String> = command
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        names.into_iter().fold(command, |command, name| {
            command.mut_subcommand(name, without_env)
        })
    }

    #[test]
    fn no_command_means_serve_with_defaults() {
        let cli = parse(&[]).unwrap();
        assert!(cli.command.is_none());
        let settings = Settings::new(&cli.serve, &cli.common);
        assert_eq!(settings.grpc_addr, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(settings.policy, BookingPolicy::default());
        assert!(!settings.demo);
    }

    #[test]
    fn bad_values_are_refused_naming_the_option() {
        let err = parse(&["serve", "--org-timezone", "Mars/Olympus"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--org-timezone"), "{text}");
        assert!(text.contains("Mars/Olympus"), "{text}");

        let err = parse(&["--max-days-ahead", "4000"]).unwrap_err();
        assert!(err.to_string().contains("--max-days-ahead"), "{err}");

        let err = parse(&["serve", "--grpc-addr", "localhost"]).unwrap_err();
        assert!(err.to_string().contains("--grpc-addr"), "{err}");
    }

    #[test]
    fn cors_origins_are_none_by_default_and_star_only_alone() {
        let cors =
            |v: &str| parse(&["--cors-allowed-origins", v]).map(|c| c.serve.cors_allowed_origins);
        assert_eq!(
            parse(&[]).unwrap().serve.cors_allowed_origins,
            CorsOrigins::None
        );
        assert_eq!(cors("*").unwrap(), CorsOrigins::Any);
        assert_eq!(
            cors("https://a.example.com, http://localhost:3000").unwrap(),
            CorsOrigins::List(vec![
                http::HeaderValue::from_static("https://a.example.com"),
                http::HeaderValue::from_static("http://localhost:3000"),
            ])
        );
        for bad in [
            "*,https://a.example.com",
            "a.example.com",
            "https://a.example.com/",
            "ftp://x",
        ] {
            assert!(cors(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_mongodb_url_chooses_mongodb() {
        let embedded = parse(&["--data-dir", "/srv/va"]).unwrap();
        assert_eq!(
            embedded.common.store(),
            StoreConfig::Embedded {
                data_dir: "/srv/va".into()
            }
        );
        let cli = parse(&[
            "--mongodb-url",
            "mongodb://db:27017/?replicaSet=rs0",
            "--mongodb-max-pool-size",
            "20",
        ])
        .unwrap();
        let StoreConfig::Mongo(mongo) = cli.common.store() else {
            panic!("expected MongoDB");
        };
        assert_eq!(mongo.url, "mongodb://db:27017/?replicaSet=rs0");
        assert_eq!(mongo.database, "vehicle_allocation");
        assert_eq!(mongo.max_pool_size, 20);
        assert_eq!(mongo.server_selection_timeout, Duration::from_secs(5));
    }

    #[test]
    fn the_cache_is_in_process_unless_redis_is_given() {
        let cache = parse(&[]).unwrap().common.cache();
        assert_eq!(cache.redis, None);
        assert_eq!(cache.ttl, Duration::from_secs(300));
        let cache = parse(&["--redis-url", "redis://r:6379", "--cache-ttl", "0"])
            .unwrap()
            .common
            .cache();
        assert_eq!(cache.redis.unwrap().timeout, Duration::from_millis(50));
        assert!(cache.ttl.is_zero(), "0 turns the cache off");
        assert!(parse(&["--cache-ttl", "soon"]).is_err());
    }

    #[test]
    fn an_upstream_must_be_an_http_url() {
        let upstream = |v: &str| parse(&["--grpc-upstream", v]).map(|c| c.serve.grpc_upstream);
        assert_eq!(
            upstream("http://10.0.0.5:50051").unwrap().as_deref(),
            Some("http://10.0.0.5:50051")
        );
        assert!(upstream("10.0.0.5:50051").is_err());
        assert!(upstream("https://x:1").is_ok());
        assert!(upstream("ftp://x:1").is_err());
    }

    #[test]
    fn an_hs256_secret_never_goes_with_a_jwks() {
        let secret = "0123456789abcdef0123456789abcdef";
        let err = parse(&[
            "--auth-jwt-hs256-secret",
            secret,
            "--auth-jwt-jwks-file",
            "/x.json",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--auth-jwt-jwks-file"), "{err}");
        let err = parse(&["--auth-jwt-hs256-secret", "short"]).unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
        let cli = parse(&["--auth-jwt-jwks-url", "https://idp/jwks.json"]).unwrap();
        let settings = Settings::new(&cli.serve, &cli.common);
        let jwt = settings.auth.jwt.unwrap();
        assert_eq!(jwt.keys, KeySource::JwksUrl("https://idp/jwks.json".into()));
        assert_eq!(jwt.employee_claim, "sub");
        assert_eq!(jwt.roles_claim, "roles");
    }

    #[test]
    fn tls_needs_both_files_and_client_auth_on_rest_needs_a_ca() {
        assert!(parse(&["--tls-cert-file", "c.pem"]).is_err());
        assert!(parse(&["--tls-cert-file", "c.pem", "--tls-key-file", "k.pem"]).is_ok());
        assert!(
            parse(&[
                "--tls-cert-file",
                "c.pem",
                "--tls-key-file",
                "k.pem",
                "--tls-client-auth-http",
                "true"
            ])
            .is_err()
        );
    }

    #[test]
    fn the_token_command_takes_roles_and_a_ttl() {
        let cli = parse(&[
            "token",
            "--employee",
            "emp-00042",
            "--role",
            "employee",
            "--role",
            "auditor",
            "--ttl",
            "30m",
        ])
        .unwrap();
        let Some(Command::Token(token)) = cli.command else {
            panic!("expected token");
        };
        assert_eq!(token.roles, [Role::Employee, Role::Auditor]);
        assert_eq!(token.ttl, Duration::from_secs(1800));
        assert!(parse(&["token", "--employee", "e", "--role", "root"]).is_err());
        assert_eq!(parse_ttl("8h"), Ok(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_ttl("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("8 hours").is_err());
    }

    #[test]
    fn rate_limits_are_off_unless_set_and_the_burst_defaults_to_the_rate() {
        let settings = |args: &[&str]| {
            let cli = parse(args).unwrap();
            Settings::new(&cli.serve, &cli.common).auth.rate_limit
        };
        assert_eq!(settings(&[]), None);
        let limit = settings(&["--rate-limit-per-second", "5"]).unwrap();
        assert_eq!((limit.per_second.get(), limit.burst.get()), (5, 5));
        let limit =
            settings(&["--rate-limit-per-second", "5", "--rate-limit-burst", "20"]).unwrap();
        assert_eq!(limit.burst.get(), 20);
        assert!(parse(&["--rate-limit-burst", "20"]).is_err());
    }

    #[test]
    fn seed_takes_its_sizes() {
        let cli = parse(&["seed", "--employees", "10", "--vehicles", "3", "--reset"]).unwrap();
        let Some(Command::Seed(seed)) = cli.command else {
            panic!("expected seed");
        };
        assert_eq!(
            (seed.employees, seed.vehicles, seed.allocations),
            (10, 3, 5000)
        );
        assert!(seed.reset);
    }

    #[test]
    fn common_options_work_after_the_command() {
        let cli = parse(&[
            "seed",
            "--org-timezone",
            "Asia/Tokyo",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(cli.common.org_timezone, chrono_tz::Asia::Tokyo);
        assert_eq!(cli.common.data_dir, PathBuf::from("/tmp/x"));
    }

    /// docs/configuration.md holds the tables `reference_markdown` renders
    /// from these definitions, between its two markers.
    #[test]
    fn the_configuration_reference_matches_the_definitions() {
        const BEGIN: &str = "<!-- BEGIN generated from src/config.rs -->\n";
        const END: &str = "<!-- END generated -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let doc = std::fs::read_to_string(path).expect("docs/configuration.md");
        let start = doc.find(BEGIN).expect("the BEGIN marker") + BEGIN.len();
        let end = doc.find(END).expect("the END marker");
        let rendered = reference_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{rendered}{}", &doc[..start], &doc[end..]);
            std::fs::write(path, updated).expect("write docs/configuration.md");
            return;
        }
        assert!(
            doc[start..end] == rendered,
            "docs/configuration.md differs from the flags in src/config.rs; regenerate it with\n  \
             UPDATE_DOCS=1 cargo test --lib config::tests::the_configuration_reference\n\
             first difference at line {}",
            doc[start..end]
                .lines()
                .zip(rendered.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "(one is longer)".to_string(), |n| (n + 1).to_string())
        );
    }
}
