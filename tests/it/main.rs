//! Integration tests: each starts the real `gslb` binary on ephemeral loopback ports
//! and talks real DNS (UDP and TCP) and HTTP to it. One test binary, many modules,
//! to keep link time down.

mod harness;

mod api;
mod browser;
mod cli;
mod client;
mod dns;
mod examples;
mod health;
mod istio;
mod operators;
mod overrides;
mod policy;
mod registry;
mod steering;
mod targets;
mod ui;
