//! Races lost to other replicas: writes whose checks failed because another replica's write
//! landed first, counted by the kind of key whose check decided it. They show how much the
//! replicas of a shared store get in each other's way (each costs a re-read and another try);
//! one replica alone on its store never loses one.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Ipam;
use super::keys::{self, Key};
use crate::store::Store;

/// The kinds of key a race is lost on, as `nethouse_ipam_lost_races_total` labels them.
pub const KINDS: [&str; 5] = ["lease", "address", "subnet", "subnet_list", "other"];

/// Which of [`KINDS`] `key` is.
fn kind_of(key: &str) -> usize {
    match keys::parse(key) {
        Ok(Key::Lease(_)) => 0,
        Ok(Key::Address { .. }) => 1,
        Ok(Key::Subnet(_)) => 2,
        Ok(Key::SubnetsMeta) => 3,
        Err(_) => 4,
    }
}

#[derive(Debug, Default)]
pub struct LostRaces([AtomicU64; KINDS.len()]);

impl LostRaces {
    /// A race lost on `key` (the key of the first check that failed).
    pub fn record(&self, key: &str) {
        self.0[kind_of(key)].fetch_add(1, Ordering::Relaxed);
    }

    /// Races lost since start, by kind.
    pub fn counts(&self) -> [(&'static str, u64); KINDS.len()] {
        std::array::from_fn(|i| (KINDS[i], self.0[i].load(Ordering::Relaxed)))
    }
}

impl<S: Store> Ipam<S> {
    /// Races lost to other replicas since start, by the kind of key that decided them.
    pub fn lost_races(&self) -> [(&'static str, u64); KINDS.len()] {
        self.races.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_counts_for_its_kind() {
        let races = LostRaces::default();
        for key in [
            "l/f/k/ns/p1",
            "i/10.0.0.0-24/10.0.0.7",
            "i/10.0.0.0-24/10.0.0.8",
            "s/10.0.0.0-24",
            "m/subnets",
            "x/unknown",
        ] {
            races.record(key);
        }
        assert_eq!(
            races.counts(),
            [
                ("lease", 1),
                ("address", 2),
                ("subnet", 1),
                ("subnet_list", 1),
                ("other", 1)
            ]
        );
    }
}
