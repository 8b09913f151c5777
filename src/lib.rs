//! screenrec: a backend for browser screen recording. Browser `MediaRecorder` chunks go to object
//! storage under keys that carry an index handed out atomically by a coordinator, so any number
//! of stateless instances can serve one recording; a stop queues a merge.
//!
//! The crate is layered: [`domain`] (pure types and rules), ports with their adapters
//! ([`store`], [`coord`], [`queue`], [`webhook`]), the durable record kept in the store ([`records`]), the
//! use cases in [`service`], and thin transports
//! ([`http`], and [`serverless`] for the Lambda functions). [`app`] wires them from a
//! [`config::Config`].

pub mod app;
pub mod auth;
pub mod aws;
pub mod config;
pub mod coord;
pub mod doctor;
pub mod domain;
pub mod error;
pub mod http;
pub mod merge;
pub mod metrics;
pub mod notify;
pub mod queue;
pub mod records;
pub mod runtime;
pub mod serverless;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod webhook;

pub use error::{Error, Result};
