//! HTTP-level tests: the real server on port 0 against a per-test Postgres database.

mod auth;
mod citus;
mod cli;
mod cluster;
mod concurrency;
mod consistency;
mod devices;
mod errors;
mod front_end;
mod fuzz;
mod hardening;
mod health;
mod helpers;
mod history;
mod identity;
mod load_balancer;
mod operations;
mod pg_cron;
mod ping;
mod polling;
mod privacy;
mod prune;
mod rate_limit;
mod replicas;
mod simulator;
mod status_rules;
