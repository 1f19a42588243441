//! Every random choice of the testbed comes from one seed, through streams named by purpose and keyed by
//! what the choice is about (a node, a slice, the n-th API call). A choice therefore does not depend on the
//! order in which other choices were made: same seed, same world, same faults.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// SplitMix64's finaliser: a good 64-bit mixer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of the purpose: stable across builds and platforms (unlike `std`'s hasher).
fn name_hash(purpose: &str) -> u64 {
    purpose.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A 64-bit value determined by the seed, the purpose and the keys.
pub fn key(seed: u64, purpose: &str, keys: &[u64]) -> u64 {
    keys.iter().fold(mix(seed ^ name_hash(purpose)), |h, k| mix(h ^ k))
}

/// A uniform draw in [0, 1).
pub fn unit(seed: u64, purpose: &str, keys: &[u64]) -> f64 {
    (key(seed, purpose, keys) >> 11) as f64 / (1u64 << 53) as f64
}

/// A whole stream of draws, for choices that need many.
pub fn stream(seed: u64, purpose: &str, keys: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(key(seed, purpose, keys))
}

/// A stable key for a string (slice names, hostnames).
pub fn text_key(text: &str) -> u64 {
    name_hash(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_depend_on_seed_purpose_and_keys_only() {
        assert_eq!(unit(7, "a", &[1, 2]), unit(7, "a", &[1, 2]));
        assert_ne!(unit(7, "a", &[1, 2]), unit(8, "a", &[1, 2]));
        assert_ne!(unit(7, "a", &[1, 2]), unit(7, "b", &[1, 2]));
        assert_ne!(unit(7, "a", &[1, 2]), unit(7, "a", &[2, 1]));
        let mean = (0..10_000).map(|i| unit(1, "m", &[i])).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
