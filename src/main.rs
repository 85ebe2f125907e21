//! The `vehicle-allocation` binary; see [`vehicle_allocation::cli`].

fn main() -> std::process::ExitCode {
    vehicle_allocation::cli::run()
}
