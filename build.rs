//! Compiles the protobuf contract in `proto/` with the pure-Rust `protox`
//! compiler, so building needs no system `protoc`; and embeds ReDoc's
//! standalone bundle for `/redoc` when it can be had (see [`embed_redoc`]).
//!
//! Besides the generated code it writes the encoded `FileDescriptorSet`, with
//! its imports and comments, for server reflection: clients such as grpcurl
//! resolve `google.protobuf.*` types from it, and show the comments on
//! `describe`. `compile_fds` ignores `file_descriptor_set_path`, so the set is
//! written here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const PROTOS: &[&str] = &[
    "vehicle_allocation/v1/allocation.proto",
    "vehicle_allocation/v1/fleet.proto",
    "vehicle_allocation/v1/events.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // Encoded by protox itself: `prost_types` would drop the options'
    // extensions, such as the `google.api.http` bindings.
    fs::write(
        out_dir.join("vehicle_allocation_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;

    // The load benchmark's echo service (benches/load/echo.rs includes it).
    println!("cargo:rerun-if-changed=benches/proto");
    let mut bench = protox::Compiler::new(["benches/proto"])?;
    bench.open_files(["echo.proto"])?;
    tonic_prost_build::configure().compile_fds(bench.file_descriptor_set())?;

    embed_redoc(&out_dir);
    Ok(())
}

/// The ReDoc release `/redoc` serves, pinned by version and by the npm
/// registry's integrity digest of its package.
const REDOC_VERSION: &str = "2.5.4";
const REDOC_INTEGRITY: &str = "sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==";

/// Writes `redoc.standalone.js` (and its licence) to `OUT_DIR` for
/// `include_str!`: from the file `REDOC_BUNDLE` names, or from the npm
/// registry with `npm pack` when npm is installed. Without either the files
/// are empty and `/redoc` loads ReDoc from its CDN, showing a link to
/// `/docs` when that fails. Nothing is fetched at run time.
fn embed_redoc(out_dir: &Path) {
    println!("cargo:rerun-if-env-changed=REDOC_BUNDLE");
    let script = out_dir.join("redoc.standalone.js");
    let licence = out_dir.join("redoc.standalone.js.LICENSE.txt");
    if fs::read_to_string(&script).is_ok_and(|text| !text.is_empty() && !text.contains(REDOC_LOGO))
    {
        return;
    }
    let fetched = match env::var_os("REDOC_BUNDLE") {
        Some(path) => fs::read_to_string(&path)
            .map(|text| (text, String::new()))
            .map_err(|e| {
                format!(
                    "cannot read REDOC_BUNDLE {}: {e}",
                    Path::new(&path).display()
                )
            }),
        None => fetch_redoc(out_dir),
    };
    let (text, licence_text) = fetched.unwrap_or_else(|why| {
        println!("cargo:warning=ReDoc is not embedded ({why}); /redoc will load it from its CDN");
        (String::new(), String::new())
    });
    fs::write(&script, text).expect("write the ReDoc bundle");
    fs::write(&licence, licence_text).expect("write the ReDoc licence");
}

/// The bundle and its licence from the npm registry, checked against
/// [`REDOC_INTEGRITY`].
fn fetch_redoc(out_dir: &Path) -> Result<(String, String), String> {
    if env::var_os("CARGO_NET_OFFLINE").is_some() {
        return Err("offline build".into());
    }
    let package = format!("redoc@{REDOC_VERSION}");
    let packed = Command::new("npm")
        .args(["pack", &package, "--silent", "--pack-destination"])
        .arg(out_dir)
        .output()
        .map_err(|e| format!("npm is not available: {e}"))?;
    if !packed.status.success() {
        return Err(format!(
            "npm pack {package} failed: {}",
            String::from_utf8_lossy(&packed.stderr).trim()
        ));
    }
    let tarball = out_dir.join(format!("redoc-{REDOC_VERSION}.tgz"));
    let bytes =
        fs::read(&tarball).map_err(|e| format!("cannot read {}: {e}", tarball.display()))?;
    let integrity = {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha512::digest(&bytes);
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    if integrity != REDOC_INTEGRITY {
        return Err(format!(
            "{package} does not have the pinned integrity digest"
        ));
    }
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(out_dir)
        .args([
            "package/bundles/redoc.standalone.js",
            "package/bundles/redoc.standalone.js.LICENSE.txt",
        ])
        .status()
        .map_err(|e| format!("tar is not available: {e}"))?;
    if !unpacked.success() {
        return Err(format!("cannot unpack {}", tarball.display()));
    }
    let read = |name: &str| {
        let path = out_dir.join("package/bundles").join(name);
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    // The bundle's only fetch from the web is the footer's logo; an empty
    // image keeps /redoc from reaching out (the page works offline).
    let script = read("redoc.standalone.js")?.replace(
        REDOC_LOGO,
        "data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27/%3E",
    );
    Ok((script, read("redoc.standalone.js.LICENSE.txt")?))
}

/// What ReDoc's bundle loads from its CDN.
const REDOC_LOGO: &str = "https://cdn.redoc.ly/redoc/logo-mini.svg";
