//! Wire types of the NetHouse HTTP API (`/v1/...`), an async client for it, and a blocking one
//! for short-lived processes (the CNI plugin).
//!
//! Every other NetHouse component (CNI plugin, scheduler extender, location controller, the
//! `nethouse` CLI) talks to the service only through this crate, so the JSON shapes live here once.
#![forbid(unsafe_code)]

pub mod blocking;
mod client;
pub mod cni_names;
pub mod duration;
#[cfg(feature = "crd")]
pub mod location;
mod types;

pub use blocking::BlockingClient;
pub use client::{Client, ClientConfig, ClientError};
pub use types::*;
