//! Wire types of the NetHouse HTTP API (`/v1/...`), an async client for it (feature `client`),
//! and a blocking one for short-lived processes (the CNI plugin).
//!
//! Every other NetHouse component (CNI plugin, scheduler extender, location controller, the
//! `nethouse` CLI) talks to the service only through this crate, so the JSON shapes live here once.
#![forbid(unsafe_code)]

pub mod blocking;
#[cfg(feature = "client")]
mod client;
pub mod cni_names;
mod config;
pub mod contract;
pub mod duration;
#[cfg(feature = "crd")]
pub mod location;
mod types;

pub use blocking::BlockingClient;
#[cfg(feature = "client")]
pub use client::Client;
pub use config::{ClientConfig, ClientError, Setting};
pub use types::*;

/// Initialises aws-lc, the workspace's one crypto provider, before any TLS client is built.
///
/// aws-lc normally detects the CPU in a load-time constructor. The shipped nethouse-cni is built
/// without it (`BORINGSSL_NO_STATIC_INITIALIZER`, scripts/build-cni-static.sh): that detection
/// is CPUID instructions, which trap on a VM, and most plugin calls never use TLS. Without this
/// call aws-lc would still be correct but would run with every CPU feature off (no AES-NI).
/// Idempotent and cheap; with the constructor in place it does nothing.
pub fn init_crypto() {
    aws_lc_rs::init();
}
