//! End-to-end tests: the real server on a random port, called as a client
//! would call it, with the generated gRPC clients.

mod helpers;
#[path = "../support/identity.rs"]
mod identity;
#[path = "../support/instrumented_store.rs"]
mod instrumented_store;
#[path = "../support/redis.rs"]
mod redis_support;

mod admin;
mod allocations;
mod auth;
mod cache;
mod cli;
mod concurrency;
mod events;
mod fleet;
mod health;
mod history;
mod hostile;
mod idempotency;
mod limits;
mod reflection;
mod rest;
mod rest_contract;
mod rest_docs;
mod rest_edges;
mod restart;
mod tls;
