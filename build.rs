//! Compiles the protobuf contract in `proto/` with the pure-Rust `protox`
//! compiler, so building needs no system `protoc`.
//!
//! Besides the generated code it writes the encoded `FileDescriptorSet`, with
//! its imports and comments, for server reflection: clients such as grpcurl
//! resolve `google.protobuf.*` types from it, and show the comments on
//! `describe`. `compile_fds` ignores `file_descriptor_set_path`, so the set is
//! written here.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "vehicle_allocation/v1/allocation.proto",
    "vehicle_allocation/v1/fleet.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("vehicle_allocation_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
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
    Ok(())
}
