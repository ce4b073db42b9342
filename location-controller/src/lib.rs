//! `nethouse-location-controller`: releases a fixed pod's IP through NetHouse exactly when its
//! Location is deleted and the pod is gone (or pending without an IP), and only then removes the
//! finalizer `nethouse.io/release-ip`; keeps the Locations of pods a StatefulSet no longer wants
//! for the retention period; reconciles NetHouse's fixed leases with Locations both ways; runs
//! as one active replica of several (leader election on a Lease).
#![forbid(unsafe_code)]

pub mod context;
mod controller;
pub mod decide;
pub mod error;
mod gone;
pub mod health;
pub mod leader;
pub mod metrics;
mod reconcile;
pub mod retention;
mod status;
pub mod sweep;
mod views;

pub use context::{Context, MANAGER, Options};
pub use controller::start;
pub use error::Error;
