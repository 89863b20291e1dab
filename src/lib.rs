//! presence: a polling-only HTTP service that tells an application who is
//! online and who is together in a room.
//!
//! A request flows one way down: HTTP extractor ([`routes`], [`auth`]) →
//! domain types ([`domain`]) → a service ([`statuses`]: read cache, ping
//! writer, change listener; [`rooms`]; [`history`]) → the store ([`store`], every SQL
//! statement), with the status rules ([`presence`], pure) applied to what it
//! returns. [`jobs`] is scheduled work only; [`startup`] wires it all.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod database;
pub mod domain;
pub mod error;
pub mod feed;
pub mod head_guard;
pub mod history;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod presence;
pub mod rate_limit;
pub mod rooms;
pub mod routes;
pub mod startup;
pub mod state;
pub mod statuses;
pub mod store;
pub mod telemetry;
pub mod webhooks;
