//! Wire types of the NetHouse HTTP API (`/v1/...`) and an async client for it.
//!
//! Every other NetHouse component (CNI plugin, scheduler extender, location controller, the
//! `nethouse` CLI) talks to the service only through this crate, so the JSON shapes live here once.
#![forbid(unsafe_code)]

mod client;
pub mod cni_names;
pub mod duration;
#[cfg(feature = "crd")]
pub mod location;
mod types;

pub use client::{Client, ClientConfig, ClientError};
pub use types::*;
