//! The set of event keys already stored, so an event is stored once however often it arrives.
//!
//! A key is the 128-bit XXH3 of `merchant_id`, a NUL byte and `event_id`: event ids are unique
//! per merchant, and two merchants that both send `event_id: "1"` must not shadow each other.
//! With 128 bits the chance of two distinct events colliding among 10^12 is below 10^-14.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::Xxh3;

/// A 128-bit fingerprint of something stored once.
pub type Key = u128;

/// The dedup key of an event.
pub fn event_key(merchant_id: &str, event_id: &str) -> Key {
    let mut h = Xxh3::new();
    h.update(merchant_id.as_bytes());
    h.update(&[0]);
    h.update(event_id.as_bytes());
    h.digest128()
}

/// The dedup key of a rejected line: the same bad line of the same source is recorded once.
pub fn reject_key(source: &str, line: u64, raw: &str) -> Key {
    let mut h = Xxh3::new();
    h.update(source.as_bytes());
    h.update(&[0]);
    h.update(&line.to_le_bytes());
    h.update(raw.as_bytes());
    h.digest128()
}

/// Keys are already uniform hashes, so hashing them again would only cost time.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, key: u128) {
        // Truncation is the point: the low half of a uniform hash is uniform.
        #[allow(clippy::cast_possible_truncation)]
        {
            self.0 = key as u64;
        }
    }
}

/// A set of keys with the identity hasher.
pub type KeySet = HashSet<Key, BuildHasherDefault<KeyHasher>>;

/// Serializes keys as little-endian 16-byte records.
pub fn encode_keys(keys: &[Key]) -> Vec<u8> {
    keys.iter().flat_map(|k| k.to_le_bytes()).collect()
}

/// Parses what [`encode_keys`] wrote; `None` if the length is not a multiple of 16.
pub fn decode_keys(bytes: &[u8]) -> Option<impl Iterator<Item = Key> + '_> {
    if !bytes.len().is_multiple_of(16) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(16)
            .map(|c| u128::from_le_bytes(c.try_into().expect("chunks_exact yields 16 bytes"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_event_id_of_two_merchants_are_different_keys() {
        assert_ne!(event_key("m1", "1"), event_key("m2", "1"));
        assert_ne!(event_key("m1", "1x"), event_key("m1x", "1"));
        assert_eq!(event_key("m1", "e"), event_key("m1", "e"));
    }

    #[test]
    fn keys_round_trip() {
        let keys = vec![event_key("a", "b"), 0, u128::MAX];
        let back: Vec<Key> = decode_keys(&encode_keys(&keys))
            .expect("whole records")
            .collect();
        assert_eq!(back, keys);
        assert!(decode_keys(&[1, 2, 3]).is_none());
    }

    #[test]
    fn set_finds_inserted_keys() {
        let mut set = KeySet::default();
        assert!(set.insert(event_key("m", "e1")));
        assert!(!set.insert(event_key("m", "e1")));
        assert!(set.insert(event_key("m", "e2")));
    }
}
