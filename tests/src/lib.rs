//! The end-to-end harness: the real upstream Kubernetes control plane (kube-apiserver,
//! kube-controller-manager, kube-scheduler from the pinned `k8s.io/kubernetes` module; etcd
//! from Debian) on loopback, for tests and the demo. Everything it starts it stops by PID,
//! also when a test panics; a failed test keeps the component logs. `realnode` adds real nodes
//! (kubelet + containerd in their own namespaces) for the scenarios that need the production
//! CNI path.
#![forbid(unsafe_code)]

pub mod agent;
pub mod alloc_load;
pub mod bench_table;
pub mod binaries;
pub mod cluster;
pub mod etcd_cluster;
pub mod pki;
pub mod ports;
pub mod realnode;
pub mod stack;
