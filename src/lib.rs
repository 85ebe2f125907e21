//! vehicle-allocation: employees book a company vehicle, with its driver,
//! for one calendar day.
//!
//! Layers, outside in: [`grpc`] (transport: decode, validate, map errors) →
//! [`domain`] (types and rules, no I/O) → [`storage`] (one trait, one module
//! per backend). [`gateway`] maps REST onto the gRPC calls. [`app`] wires
//! them into servers; [`config`], [`telemetry`],
//! [`metrics`] and [`cli`] are the process around it.

pub mod app;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod gateway;
pub mod grpc;
pub mod health;
pub mod import;
pub mod metrics;
pub mod progress;
pub mod proto;
pub mod reasons;
pub mod seed;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tls;
