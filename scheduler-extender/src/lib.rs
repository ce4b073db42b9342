//! `nethouse-scheduler-extender`: the kube-scheduler HTTP extender. A fixed pod whose Location
//! exists may only go to nodes of the Location's zone; every other node is
//! FailedAndUnresolvable with a reason naming the pod, its IP and both zones. A fixed pod with no
//! Location yet may go to any zone that still has free addresses. Other pods pass untouched.
//!
//! `protocol` reads and writes the scheduler's wire format, `decide` makes the pure decisions,
//! `index` holds what the decisions need (nodes' zones, Locations, zone capacity), `server` is
//! the HTTP surface.
#![forbid(unsafe_code)]

pub mod decide;
pub mod index;
pub mod protocol;
pub mod server;
