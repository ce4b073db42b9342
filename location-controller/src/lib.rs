//! `nethouse-location-controller`: releases a fixed pod's IP through NetHouse exactly when its
//! Location is deleted and the pod is gone (or pending without an IP), and only then removes the
//! finalizer `nethouse.io/release-ip`; keeps the Locations of pods a StatefulSet no longer wants
//! for the retention period; reconciles NetHouse's fixed leases with Locations both ways; runs
//! as one active replica of several (leader election on a Lease).
#![forbid(unsafe_code)]

pub mod decide;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod retention;
pub mod sweep;

pub use reconcile::{Context, Options, start};
