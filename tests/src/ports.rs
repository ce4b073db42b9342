//! Free loopback ports: the same helper NetHouse's own tests use.

#[path = "../../nethouse/tests/common/ports.rs"]
mod shared;

pub use shared::free_port;
