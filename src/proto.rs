//! Code generated from `proto/` by `build.rs`.

/// The `vehicle_allocation.v1` package: messages, servers and clients.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("vehicle_allocation.v1");
}

/// The encoded descriptors of `proto/`, imports included, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/vehicle_allocation_descriptor.bin"
));
