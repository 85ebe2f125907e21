//! vehicle-allocation: employees book a company vehicle, with its driver,
//! for one calendar day.
//!
//! # How a call travels
//!
//! ```text
//! client ──gRPC──────────────┐
//! client ──REST── gateway ───┤  (in-process gRPC, the caller's address kept)
//!                            ▼
//!             grpc::edge: authenticate, limits, per-caller shares,
//!                         metrics, one RequestContext
//!                            ▼
//!             grpc::<service>: decode + validate into domain commands
//!                            │  (Violations: every bad field at once)
//!                            ▼
//!             storage: cache → meters → backend (SQLite | MongoDB)
//!                            ▼
//!             storage::steps, in the backend's transaction:
//!               read facts → domain::booking|admin::decide → apply write
//!                                                          + its event
//!                            ▼
//!             grpc::status: DomainError / StoreError → tonic::Status
//!                           (reasons from `reasons`, internals logged)
//! ```
//!
//! # Modules
//!
//! - Transport: [`grpc`] (services, the edge, errors to statuses),
//!   [`gateway`] (REST onto the gRPC calls, OpenAPI, SSE), [`server`]
//!   (connection limits shared by both listeners), [`tls`], [`auth`] (who
//!   the caller is), [`health`].
//! - Rules: [`domain`] (types and every rule, no I/O), [`reasons`] (the
//!   catalogue of error reasons).
//! - Persistence: [`storage`] (traits by concern, the write steps, the
//!   backends, the cache and meters decorators), [`cache`] (Redis or
//!   in-process).
//! - The process around it: [`app`] (wiring, from [`config`]), [`cli`],
//!   [`telemetry`] (logs, traces), [`metrics`], [`clock`], [`progress`].
//! - Data in bulk: [`seed`] (demo and benchmark data), [`import`] (an
//!   organisation's own files).
//! - [`proto`]: the code generated from `proto/`.

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
