//! The verdicts of token reviews, kept briefly so that a node's every CNI call does not cost a
//! call to the Kubernetes API. Keyed by the token's SHA-256: the cache holds no credential.
//! Time is passed in, so its rules are tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

pub type Key = [u8; 32];

/// Longer than any ServiceAccount token; a header holding more is not one.
const MAX_JWT_LEN: usize = 16 * 1024;

pub fn key(token: &str) -> Key {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// Whether `token` has the shape of a JWT (three base64url parts). Only such tokens are sent to
/// the Kubernetes API: a random string must not cost a call.
pub fn looks_like_jwt(token: &str) -> bool {
    let base64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
    };
    token.len() <= MAX_JWT_LEN && token.split('.').count() == 3 && token.split('.').all(base64url)
}

/// The `exp` claim of a JWT (seconds since the epoch), read WITHOUT verifying the token: the
/// TokenReview verified it; this only bounds how long its verdict is kept.
pub fn expiry(token: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<u64>,
    }
    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let payload = engine.decode(token.split('.').nth(1)?).ok()?;
    serde_json::from_slice::<Claims>(&payload).ok()?.exp
}

/// How long a verdict is kept: an acceptance `ttl`, but never past the token's expiry (a token
/// without `exp` is kept `ttl`); a refusal `refused_ttl`, so a node retrying with a bad token
/// costs one review per period.
pub fn keep_for(
    accepted: bool,
    exp: Option<u64>,
    unix_now: u64,
    ttl: Duration,
    refused_ttl: Duration,
) -> Duration {
    if !accepted {
        return refused_ttl;
    }
    match exp {
        Some(exp) => ttl.min(Duration::from_secs(exp.saturating_sub(unix_now))),
        None => ttl,
    }
}

/// A bounded map from token hash to verdict, each valid until its own instant.
pub struct Cache<V> {
    entries: HashMap<Key, (V, Instant)>,
    capacity: usize,
}

impl<V: Clone> Cache<V> {
    pub fn new(capacity: usize) -> Self {
        Cache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&mut self, key: &Key, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((v, until)) if *until > now => Some(v.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` until `until`. When full, expired entries go first, then the one that
    /// would expire soonest: a flood of new tokens costs reviews, never memory.
    pub fn put(&mut self, key: Key, value: V, until: Instant, now: Instant) {
        if until <= now {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, u)| *u > now);
            if self.entries.len() >= self.capacity
                && let Some(soonest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, u))| *u)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(key, (value, until));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An unsigned JWT with `exp` (for the shape and the expiry; never verified here).
    pub fn jwt(exp: Option<u64>, tag: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = match exp {
            Some(e) => format!(r#"{{"exp":{e},"sub":"{tag}"}}"#),
            None => format!(r#"{{"sub":"{tag}"}}"#),
        };
        format!(
            "{}.{}.c2lnbmF0dXJl",
            engine.encode(r#"{"alg":"RS256"}"#),
            engine.encode(claims)
        )
    }

    #[test]
    fn jwt_shape_and_expiry() {
        let t = jwt(Some(1_700_000_000), "a");
        assert!(looks_like_jwt(&t));
        assert_eq!(expiry(&t), Some(1_700_000_000));
        assert_eq!(expiry(&jwt(None, "a")), None);
        for not in [
            "node-token-0123456789abcdef",
            "a.b",
            "a..c",
            "a.b.c.d",
            "a.b c.d",
            "a.b/c.d",
        ] {
            assert!(!looks_like_jwt(not), "{not}");
        }
        assert!(!looks_like_jwt(&format!("{t}{}", "a".repeat(MAX_JWT_LEN))));
        assert_eq!(expiry("a.!!!.c"), None, "undecodable payload");
        assert_eq!(expiry("a.bm90IGpzb24.c"), None, "payload not JSON");
    }

    #[test]
    fn the_key_is_a_hash_not_the_token() {
        let t = jwt(Some(1), "a");
        assert_eq!(key(&t), key(&t.clone()));
        assert_ne!(key(&t), key(&jwt(Some(1), "b")));
        assert!(
            !key(&t)
                .windows(8)
                .any(|w| t.as_bytes().windows(8).any(|x| x == w))
        );
    }

    #[test]
    fn keep_for_table() {
        let (ttl, refused) = (Duration::from_secs(60), Duration::from_secs(10));
        let now = 1_000;
        for (accepted, exp, want) in [
            (true, Some(now + 3600), 60),
            (true, Some(now + 30), 30),
            (true, Some(now), 0),
            (true, Some(now - 5), 0),
            (true, None, 60),
            (false, Some(now + 3600), 10),
            (false, None, 10),
        ] {
            assert_eq!(
                keep_for(accepted, exp, now, ttl, refused),
                Duration::from_secs(want),
                "{accepted} {exp:?}"
            );
        }
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut c: Cache<u32> = Cache::new(2);
        c.put([1; 32], 1, s(60), t0);
        assert_eq!(c.get(&[1; 32], s(59)), Some(1));
        assert_eq!(c.get(&[1; 32], s(60)), None, "expired at its instant");
        assert_eq!(c.len(), 0, "and dropped");
        c.put([2; 32], 2, s(5), s(6));
        assert_eq!(c.len(), 0, "already expired: not kept");

        c.put([1; 32], 1, s(20), s(10));
        c.put([2; 32], 2, s(40), s(10));
        c.put([3; 32], 3, s(30), s(10));
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.get(&[1; 32], s(11)),
            None,
            "the soonest to expire made room"
        );
        assert_eq!(c.get(&[2; 32], s(11)), Some(2));
        // Expired entries make room before live ones.
        c.put([4; 32], 4, s(100), s(35));
        assert_eq!(c.get(&[2; 32], s(35)), Some(2));
        assert_eq!(c.get(&[4; 32], s(35)), Some(4));
        // Replacing an entry needs no room.
        c.put([4; 32], 44, s(100), s(36));
        assert_eq!(
            (c.get(&[2; 32], s(36)), c.get(&[4; 32], s(36))),
            (Some(2), Some(44))
        );
    }
}
