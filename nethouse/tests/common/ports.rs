//! Free loopback ports for the processes tests start (etcd, apiserver, NetHouse...). Standard
//! library only: NetHouse's tests include it by `#[path]` (through `etcd.rs`), and so does
//! the end-to-end crate (`tests/src/ports.rs`).

/// A loopback port free now, for a process about to bind it. Below Linux's ephemeral range
/// (32768-60999 by default) and Kubernetes' NodePorts (30000-32767), so no outgoing connection
/// or Service takes it in between; never the same twice in one process, so tests running side
/// by side do not share one (a port released by `bind(0)` can go to both: CI saw an etcd
/// member fail with "bind: address already in use").
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test processes that do run at once start far apart.
    let start = std::process::id().wrapping_mul(7_919) % COUNT;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        if n >= COUNT {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("every loopback port from {FIRST} on was handed out"),
            ));
        }
        let port = (FIRST + (start + n) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}
