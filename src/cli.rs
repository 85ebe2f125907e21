//! The command line: read configuration, start logging, run a command.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::app::Application;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    Cli, Command, CommonArgs, EraseEmployeeArgs, HealthCheckArgs, ImportArgs, SeedArgs, ServeArgs,
    Settings, TokenArgs,
};
use crate::import::{self, ImportError, ImportFiles};
use crate::seed::{self, SeedPlan};
use crate::storage::{self, CachedSetup, StoreConfig};
use crate::telemetry;
use crate::telemetry::LogFormat;

/// Runs the command named on the command line.
pub fn run() -> ExitCode {
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("error: cannot read .env: {error}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    if let Some(Command::Token(args)) = &cli.command {
        // No logging, no runtime: the token alone goes to stdout.
        return match run_token(args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        };
    }
    crate::tls::install_default_provider();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Within the runtime, where spans are exported; held to the end of
    // `run`: dropping it writes out the queued lines and the last spans.
    let traces = match telemetry::TraceSettings::from_env() {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match runtime.block_on(async { telemetry::init(cli.common.log_format, traces) })
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Some(Command::Seed(args)) => run_seed(&args, &cli.common).await,
            Some(Command::Import(args)) => run_import(&args, &cli.common).await,
            Some(Command::EraseEmployee(args)) => run_erase_employee(&args, &cli.common).await,
            Some(Command::HealthCheck(args)) => run_health_check(&args).await,
            Some(Command::Serve(args)) => run_serve(&args, &cli.common).await,
            Some(Command::Token(_)) => unreachable!("handled before the runtime starts"),
            None => run_serve(&cli.serve, &cli.common).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Once: as a JSON line for log collectors, else as plain text
            // (text log lines go to the same stderr).
            if cli.common.log_format == LogFormat::Json && tracing::enabled!(tracing::Level::ERROR)
            {
                tracing::error!("{message}");
            } else {
                // After the lines still waiting in their batch, not before.
                drop(telemetry);
                eprintln!("error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run_serve(args: &ServeArgs, common: &CommonArgs) -> Result<(), String> {
    let settings = Settings::new(args, common);
    let app = Application::build(settings)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// The store for a bulk load: through Redis when there is one, so that
/// running services see the new data at once instead of after CACHE_TTL.
/// A seed gets SQLite's large page cache; an import's memory is bounded,
/// its sessions keeping a cache of their own.
async fn open_for_loading(common: &CommonArgs, seeding: bool) -> Result<CachedSetup, String> {
    let store = if seeding {
        storage::open_for_loading(&common.store()).await
    } else {
        storage::open(&common.store()).await
    }
    .map_err(|e| e.to_string())?;
    with_redis(common, store)
}

/// `store` behind Redis when there is one.
fn with_redis(common: &CommonArgs, store: Arc<dyn storage::Store>) -> Result<CachedSetup, String> {
    if common.redis_url.is_some() {
        storage::with_cache(store, &common.cache()).map_err(|e| e.to_string())
    } else {
        Ok(CachedSetup { store, cache: None })
    }
}

/// Fails when the data was written but Redis could not be told, so that
/// whoever runs a load knows the replicas may serve old data.
fn check_delivered(setup: &CachedSetup) -> Result<(), String> {
    match &setup.cache {
        Some(cache) if cache.undelivered() > 0 => Err(
            "the data was written, but Redis could not be told: running services may serve \
             the old data for up to CACHE_TTL"
                .into(),
        ),
        _ => Ok(()),
    }
}

async fn run_seed(args: &SeedArgs, common: &CommonArgs) -> Result<(), String> {
    let config = common.store();
    let setup = open_for_loading(common, true).await?;
    let store = Arc::clone(&setup.store);
    let plan = SeedPlan {
        employees: args.employees,
        vehicles: args.vehicles,
        allocations: args.allocations,
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let report = seed::seed(
        store.as_ref(),
        &plan,
        &common.policy(),
        SystemClock.now(),
        args.reset,
    )
    .await
    .map_err(|e| e.to_string())?;
    println!(
        "seeded {} employees, {} vehicles with their drivers and {} bookings into {} in {:.1}s",
        report.employees,
        report.vehicles,
        report.allocations,
        describe(&config),
        started.elapsed().as_secs_f64()
    );
    check_delivered(&setup)
}

async fn run_import(args: &ImportArgs, common: &CommonArgs) -> Result<(), String> {
    let files = ImportFiles {
        employees: args.employees.clone(),
        drivers: args.drivers.clone(),
        vehicles: args.vehicles.clone(),
    };
    if files == ImportFiles::default() {
        return Err(ImportError::NoFiles.to_string());
    }
    let config = common.store();
    // The rows go to the service when one is named, or when one holds the
    // data directory: then loading staff needs no downtime.
    let target = match &args.server {
        Some(url) => ImportTarget::Server(url.clone()),
        None => match storage::open(&config).await {
            Ok(store) => ImportTarget::Store(with_redis(common, store)?),
            Err(storage::OpenError::Embedded(storage::sqlite::OpenError::Locked { path, pid })) => {
                let url = format!("http://{}", local(args.grpc_addr));
                eprintln!(
                    "the data directory {} is in use by a running service (pid {pid}): \
                     sending the rows to it at GRPC_ADDR {url}",
                    path.display()
                );
                ImportTarget::Server(url)
            }
            Err(error) => return Err(error.to_string()),
        },
    };
    let started = std::time::Instant::now();
    let now = SystemClock.now();
    let window = common.policy().window(now);
    let limits = import::Limits::default();
    let (imported, into, setup) = match target {
        ImportTarget::Store(setup) => {
            let sessions = import::StoreSessions(setup.store.as_ref());
            let imported =
                import::import_through(&sessions, &files, now, window, args.dry_run, limits).await;
            (imported, describe(&config), Some(setup))
        }
        ImportTarget::Server(url) => {
            let sessions = remote_sessions(&url).await?;
            let imported =
                import::import_through(&sessions, &files, now, window, args.dry_run, limits).await;
            (imported, format!("the service at {url}"), None)
        }
    };
    match imported {
        Ok(report) => {
            if args.dry_run {
                print!("{}", report.plan());
                println!("dry run: nothing was written");
            } else if report.written {
                println!(
                    "imported into {into} in {:.1}s",
                    started.elapsed().as_secs_f64()
                );
            } else {
                println!("nothing to change: the store already holds these rows");
            }
            print!("{}", report.summary(args.dry_run));
            setup.as_ref().map_or(Ok(()), check_delivered)
        }
        Err(ImportError::Rejected(rejection)) => {
            for problem in &rejection.problems {
                eprintln!("{problem}");
            }
            let not_shown = rejection.total - rejection.problems.len();
            if not_shown > 0 {
                eprintln!("… and {not_shown} more problem(s)");
            }
            Err(ImportError::Rejected(rejection).to_string())
        }
        Err(other) => Err(other.to_string()),
    }
}

/// Where an import's rows are decided.
enum ImportTarget {
    Store(CachedSetup),
    /// A running service's URL.
    Server(String),
}

/// The sessions of the service at `url`, as the credential in the
/// environment: `IMPORT_API_KEY`, or else `IMPORT_BEARER_TOKEN`.
async fn remote_sessions(url: &str) -> Result<import::remote::RemoteSessions, String> {
    use import::remote::Credential;
    let credential = match (
        std::env::var("IMPORT_API_KEY"),
        std::env::var("IMPORT_BEARER_TOKEN"),
    ) {
        (Ok(key), _) if !key.is_empty() => Credential::ApiKey(key),
        (_, Ok(token)) if !token.is_empty() => Credential::Bearer(token),
        _ => Credential::None,
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("--server {url}: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(5));
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())
            .map_err(|e| format!("--server {url}: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach the service at {url}: {e}; nothing was written"))?;
    Ok(import::remote::RemoteSessions::new(channel, credential))
}

/// `addr`, an unspecified IP (0.0.0.0, as a container's GRPC_ADDR says)
/// meaning this host.
fn local(mut addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

async fn run_erase_employee(args: &EraseEmployeeArgs, common: &CommonArgs) -> Result<(), String> {
    use crate::domain::{FleetCommand, FleetEntity, FleetRequest, Origin};
    crate::domain::allocation::validate_id("id", &args.id).map_err(|v| v.description)?;
    let setup = open_for_loading(common, false).await?;
    let now = SystemClock.now();
    let request = FleetRequest {
        command: FleetCommand::EraseEmployee {
            id: args.id.clone(),
            cancel_conflicting: args.cancel_conflicting_bookings,
        },
        now,
        window: common.policy().window(now),
        origin: Origin::system("erase-employee"),
    };
    let outcome = setup
        .store
        .apply_fleet(vec![request])
        .await
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or("the store returned no outcome")?;
    let FleetEntity::Employee(employee) = &outcome.entity else {
        return Err("the store returned another kind of entity".into());
    };
    if outcome.changed {
        println!(
            "erased employee {}: now {} <{}>, deactivated",
            employee.id, employee.name, employee.email
        );
    } else {
        println!(
            "employee {} was erased already: nothing changed",
            employee.id
        );
    }
    for booking in &outcome.cancelled {
        println!("cancelled booking {} on {}", booking.id, booking.date);
    }
    check_delivered(&setup)
}

/// An HS256 token signed with the configured secret.
fn run_token(args: &TokenArgs) -> Result<String, String> {
    let Some(secret) = &args.jwt.auth_jwt_hs256_secret else {
        return Err(
            "no AUTH_JWT_HS256_SECRET is configured: `token` signs development tokens with it; \
             with a JWKS, get tokens from your identity provider"
                .into(),
        );
    };
    let config = args.jwt.config().expect("a secret configures tokens");
    let claims = crate::auth::jwt::Claims {
        employee: &args.employee,
        roles: &args.roles,
        ttl: args.ttl,
        now: SystemClock.now(),
    };
    crate::auth::jwt::mint_hs256(secret, &config, &claims).map_err(|e| e.to_string())
}

async fn run_health_check(args: &HealthCheckArgs) -> Result<(), String> {
    let addr = local(args.grpc_addr);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(args.timeout)
        .timeout(args.timeout)
        .connect()
        .await
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .map_err(|status| format!("health check failed: {}", status.message()))?;
    let status = response.into_inner().status();
    println!("{}", status.as_str_name());
    if status == tonic_health::pb::health_check_response::ServingStatus::Serving {
        Ok(())
    } else {
        Err(format!("{addr} is {}", status.as_str_name()))
    }
}

/// Where the data went, without credentials.
fn describe(config: &StoreConfig) -> String {
    match config {
        StoreConfig::Embedded { data_dir } => data_dir
            .join(storage::sqlite::DATABASE_FILE)
            .display()
            .to_string(),
        StoreConfig::Mongo(mongo) => format!("MongoDB database {}", mongo.database),
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what orchestrators send).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
