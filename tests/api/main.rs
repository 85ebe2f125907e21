//! End-to-end tests: the real server on a random port, called as a client
//! would call it, with the generated gRPC clients.

mod helpers;

mod allocations;
mod cli;
mod concurrency;
mod fleet;
mod health;
mod history;
mod idempotency;
mod reflection;
mod rest;
mod rest_docs;
mod rest_edges;
mod restart;
