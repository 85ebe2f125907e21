//! The `vehicle-allocation` binary; see [`vehicle_allocation::cli`].

/// jemalloc rather than the system allocator: glibc's per-thread arenas
/// keep freed memory, and a server that builds and drops many small strings
/// per request on several threads grows its resident set for nothing.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    vehicle_allocation::cli::run()
}

/// Unused dirty pages go back to the system after a second, from a
/// background thread rather than on the request path.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
