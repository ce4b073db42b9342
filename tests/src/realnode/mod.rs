//! Real nodes: each one a network + mount namespace running Debian's containerd and runc and
//! the upstream kubelet, so the CNI chain — Debian's macvlan with `nethouse-cni` as IPAM — is
//! invoked by containerd's CRI plugin exactly as in production. Nodes attach to their zone's
//! L2 segment, a bridge in the fabric namespace, which also routes between zones and is where
//! the control plane and NetHouse run (the test thread enters it before starting them). The
//! host's network, sysctls and paths stay as they were. What this rests on, measured on this
//! machine kind: `shared/reference/REAL-NODE.md`.
//!
//! [`RealStack::start`] assembles a run: [`Fabric::create`] and [`Fabric::enter`], NetHouse
//! ([`nethouse::start_in_fabric`]), `Cluster` with `node_facing_address` = the fabric's
//! address, [`RealNodes::start`] and [`RealNodes::wait_ready`]. Pods use the images in
//! [`images`] with `imagePullPolicy: Never`.
//!
//! [`install::InstallStack`] is the other way to assemble a run: no NetHouse of the harness and
//! no CNI chain written by it, but nodes as a real cluster has them (kube-proxy, cluster DNS,
//! their own `/etc` and `/opt`), on which the shipped manifests are applied as users apply them.

pub mod cgroups;
pub mod cni;
pub mod containerd;
pub mod fabric;
pub mod holder;
pub mod hostfs;
pub mod images;
pub mod install;
pub mod kube_proxy;
pub mod kubelet;
pub mod nethouse;
pub mod netns;
pub mod node;
pub mod node_env;
pub mod nodes;
pub mod process;
pub mod stack;
pub mod uplink;
pub mod whereabouts;

pub use fabric::{Fabric, Zone};
pub use node::{Installed, Node, NodeCni, NodeEnv, NodeSpec};
pub use nodes::{RealNodes, api_server_for_nodes};
pub use stack::{RealStack, StartTimings};

/// A name part no other stack of this process has used: network namespaces and links are
/// machine-wide, and tests run in parallel. `kind` tells the stacks' names apart.
pub(crate) fn unique_tag(kind: char) -> String {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}{kind}{n}", std::process::id())
}
