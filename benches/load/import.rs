//! `import` as an organisation runs it: the whole process on a file of
//! employees, into a new embedded store, then the same file again.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DEPARTMENTS: [&str; 8] = [
    "Finance",
    "Sales",
    "Engineering",
    "Operations",
    "Legal",
    "Marketing",
    "Support",
    "Facilities",
];

/// Times `import --employees` of `employees` rows: first into an empty
/// store (every row created), then again (every row unchanged).
pub fn measure(binary: &Path, data_root: &Path, employees: usize) -> (Duration, Duration) {
    let dir = data_root.join("import");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the import directory");
    let file = dir.join("employees.csv");
    let mut csv = String::from("id,name,email,department\n");
    for n in 1..=employees {
        csv += &format!(
            "imp-{n:07},Employee {n},employee.{n}@example.org,{}\n",
            DEPARTMENTS[n % DEPARTMENTS.len()]
        );
    }
    std::fs::write(&file, csv).expect("write the employees file");
    let store = dir.join("store");
    let run = || {
        let started = Instant::now();
        let output = Command::new(binary)
            .arg("import")
            .arg("--employees")
            .arg(&file)
            .arg("--data-dir")
            .arg(&store)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run import");
        let took = started.elapsed();
        assert!(
            output.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (took, String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (first, said) = run();
    assert!(
        said.contains(&format!(
            "employees: {employees} created, 0 updated, 0 unchanged"
        )),
        "{said}"
    );
    let (again, said) = run();
    assert!(
        said.contains(&format!(
            "employees: 0 created, 0 updated, {employees} unchanged"
        )),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    (first, again)
}
