//! Free loopback ports: the same helper NetHouse's own tests use.

#[path = "../../nethouse/tests/common/ports.rs"]
mod shared;

pub use shared::free_port;

// Here, not in the shared file: every test binary that includes that one would run it again.
#[cfg(test)]
mod tests {
    use super::free_port;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        assert!(
            ports.iter().all(|p| (20_000..30_000).contains(p)),
            "{ports:?}"
        );
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
    }
}
