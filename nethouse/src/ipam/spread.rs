//! Several replicas allocating from one subnet at once (a shared store): if each handed out the
//! lowest never-used address, as one replica alone does, all of them would try for the same
//! next addresses, and all but one would lose each race (one more round-trip, a re-read and
//! another try, until an allocation gives up). So with a shared store each replica hands out
//! each subnet's never-used addresses from a random offset on ([`super::pool::Pool::start_at`]),
//! and after losing an address to another replica it moves on to another random offset rather
//! than walk on behind the winner through the addresses it is taking.
//!
//! Released addresses likewise: one replica alone reuses the one released longest ago, but
//! replicas doing so would all try for the same one (the head of the same queue) and march in
//! step through it, losing a race per allocation once a subnet's never-used addresses are gone,
//! its normal state under churn. So with a shared store each takes one at random from among the
//! [`REUSE_WINDOW`] released longest ago: every one of them has had its cooldown, which is the
//! promise; the order among them is only a preference.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::state::State;

/// How many of the addresses released longest ago (cooldown over) a replica on a shared store
/// picks among. Large enough that replicas rarely pick the same (a few in 64 per pick with 3
/// replicas), small enough to stay among the longest free of a subnet of any size.
pub(super) const REUSE_WINDOW: usize = 64;

/// Random offsets into subnets, one replica's own sequence.
#[derive(Clone, Debug)]
pub struct Spread {
    state: u64,
}

impl Spread {
    /// A sequence of its own: replicas started together must not start at the same offsets.
    pub fn random() -> Spread {
        Spread::seeded(RandomState::new().hash_one(std::process::id()))
    }

    /// The same seed gives the same offsets (tests).
    pub fn seeded(seed: u64) -> Spread {
        Spread { state: seed }
    }

    /// The next offset below `size` (splitmix64: well spread from any seed, also from 0).
    fn next(&mut self, size: u128) -> u128 {
        let mut draw = || {
            self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let wide = (u128::from(draw()) << 64) | u128::from(draw());
        wide % size.max(1)
    }
}

/// The next address of `subnet`'s pool ([`super::pool::Pool::pick`]); with a shared store a
/// released one comes from a random place among the [`REUSE_WINDOW`] released longest ago.
pub(super) fn pick(
    st: &mut State,
    subnet: &str,
    now_ms: u64,
    cooldown_ms: u64,
) -> Option<super::pool::Pick> {
    let State {
        spread, subnets, ..
    } = st;
    let pool = &mut subnets.get_mut(subnet)?.pool;
    match spread.as_mut() {
        Some(spread) => pool.pick_by(now_ms, cooldown_ms, |cooled| {
            spread.next(cooled.min(REUSE_WINDOW) as u128) as usize
        }),
        None => pool.pick(now_ms, cooldown_ms),
    }
}

/// Gives `subnet`'s pool a random starting offset unless it has one (or the view is not
/// shared with other replicas).
pub(super) fn start(st: &mut State, subnet: &str) {
    let State {
        spread, subnets, ..
    } = st;
    if let (Some(spread), Some(e)) = (spread.as_mut(), subnets.get_mut(subnet))
        && !e.pool.spreads()
    {
        e.pool.start_at(spread.next(e.subnet.cidr.size()));
    }
}

/// `subnet`'s never-used address was taken by another replica: hand out from elsewhere.
pub(super) fn jump(st: &mut State, subnet: &str) {
    let State {
        spread, subnets, ..
    } = st;
    if let (Some(spread), Some(e)) = (spread.as_mut(), subnets.get_mut(subnet)) {
        e.pool.start_at(spread.next(e.subnet.cidr.size()));
    }
}
