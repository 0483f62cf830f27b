//! Integration tests: each starts the real `gslb` binary on ephemeral loopback ports
//! and talks real DNS (UDP and TCP) and HTTP to it. One test binary, many modules,
//! to keep link time down.

mod harness;

mod api;
mod browser;
mod cli;
mod client;
mod dns;
mod dns_limits;
mod etcd;
mod examples;
mod fleet;
mod fqdn;
mod health;
mod httpvip;
mod istio;
mod limits;
mod operators;
mod overrides;
mod policy;
mod quorum;
mod registry;
mod reload;
mod resolver;
mod steering;
mod targets;
mod ui;
