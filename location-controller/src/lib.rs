//! `nethouse-location-controller`: releases a fixed pod's IP through NetHouse exactly when its
//! Location is deleted and the pod is gone (or pending without an IP), and only then removes the
//! finalizer `nethouse.io/release-ip`. Retention, reconciliation with NetHouse and leader
//! election build on this loop.
#![forbid(unsafe_code)]

pub mod decide;
pub mod reconcile;

pub use reconcile::{Context, start};
