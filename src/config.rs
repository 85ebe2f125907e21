//! Configuration: command-line flags, each with an environment variable, and
//! a `.env` file read before either.
//!
//! Values are parsed and checked here, so a bad value stops the process at
//! startup with a message naming the flag and its variable, rather than
//! failing later in a request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::BookingPolicy;

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
    /// Run the gRPC server (the default).
    Serve(ServeArgs),
    /// Fill the store with realistic fake employees, vehicles and bookings.
    Seed(SeedArgs),
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
}

impl CommonArgs {
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

    /// Seed the store with demo data first, if it is empty.
    #[arg(long)]
    pub demo: bool,

    /// Seconds that in-flight requests get to finish on shutdown.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,
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

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Everything `serve` needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub policy: BookingPolicy,
    /// Seed an empty store with demo data before serving.
    pub demo: bool,
    /// How long in-flight requests get on shutdown before they are cut off.
    pub shutdown_timeout: Duration,
    /// How often the store is pinged to keep health up to date.
    pub health_check_interval: Duration,
}

impl Settings {
    /// Settings from parsed `serve` and common options.
    pub fn new(serve: &ServeArgs, common: &CommonArgs) -> Self {
        Self {
            grpc_addr: serve.grpc_addr,
            data_dir: common.data_dir.clone(),
            policy: common.policy(),
            demo: serve.demo,
            shutdown_timeout: serve.shutdown_timeout,
            health_check_interval: Duration::from_secs(5),
        }
    }
}

fn parse_time_zone(value: &str) -> Result<Tz, String> {
    value.parse::<Tz>().map_err(|_| {
        format!("{value:?} is not an IANA time zone name such as UTC or Europe/Berlin")
    })
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{value:?} is not a whole number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vehicle-allocation").chain(args.iter().copied()))
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
}
