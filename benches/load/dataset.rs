//! The data set: seeded once per size, seed and day, and copied for each
//! run so that runs do not see each other's bookings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How much data, from which seed.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Size {
    pub employees: usize,
    pub vehicles: usize,
    pub allocations: usize,
    pub seed: u64,
}

/// A fresh copy of the seeded data in `scratch`, and the seeding time when
/// it had to be seeded now.
pub fn prepare(binary: &Path, root: &Path, size: Size, scratch: &Path) -> Option<Duration> {
    let today = chrono::Utc::now().date_naive();
    let seeded = root.join(format!(
        "e{}-v{}-a{}-s{}-{today}",
        size.employees, size.vehicles, size.allocations, size.seed
    ));
    let marker = seeded.join("complete");
    let mut seeding = None;
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&seeded);
        std::fs::create_dir_all(&seeded).expect("create the data directory");
        eprintln!("seeding {size:?} into {} ...", seeded.display());
        let started = Instant::now();
        let status = Command::new(binary)
            .arg("seed")
            .arg("--data-dir")
            .arg(&seeded)
            .args(["--employees", &size.employees.to_string()])
            .args(["--vehicles", &size.vehicles.to_string()])
            .args(["--allocations", &size.allocations.to_string()])
            .args(["--seed", &size.seed.to_string()])
            .env("RUST_LOG", "warn")
            .status()
            .expect("run seed");
        assert!(status.success(), "seeding failed");
        seeding = Some(started.elapsed());
        std::fs::write(&marker, "").expect("mark the data set complete");
    }
    copy_dir(&seeded, scratch);
    seeding
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("create the scratch directory");
    for entry in std::fs::read_dir(from).expect("read the data set") {
        let entry = entry.expect("read an entry");
        let target: PathBuf = to.join(entry.file_name());
        std::fs::copy(entry.path(), target).expect("copy the data set");
    }
}
