//! Integration suite: one binary, run against every backend `common::backends()` lists (the
//! embedded adapters, and real Redis with real S3 API servers when `scripts/test` started them).

mod api;
mod cli;
mod common;
mod coordinator;
mod durable;
mod faults;
mod ha;
mod hardening;
mod limits;
mod matrix;
mod merge;
mod metrics;
mod mp4;
mod notify;
mod owners;
mod quotas;
mod restarts;
mod serverless;
mod sweep;
mod webhooks;
mod ws_client;
