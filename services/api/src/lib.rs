//! The wire types of Retrace's HTTP API: every request and answer of `/v1` and the error
//! document, shared by the services that answer them and the clients that send them (the
//! `retrace` CLI, the SDKs). Times are RFC 3339 in UTC; durations are milliseconds.
//!
//! **API Boundary**: this crate holds documents only (serde, no tokio, axum, rdkafka or
//! fjall), so a client depends on it and not on a service.

mod admin;
mod digests;
mod error;
mod incidents;
mod jobs;
mod replay;
mod schema;
mod shards;
mod trace;

pub use admin::*;
pub use digests::*;
pub use error::*;
pub use incidents::*;
pub use jobs::*;
pub use replay::*;
pub use shards::*;
pub use trace::*;
