//! NetHouse: the IPAM service that owns every pod IP of the cluster.
//!
//! Layers, inside out: `model` (validated types), `ipam` (the lease life cycle, pure decisions
//! plus one in-memory view), `store` (the durable truth), `server` (HTTP), `cli` (operators).
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod ipam;
pub mod metrics;
pub mod model;
pub mod server;
pub mod store;
