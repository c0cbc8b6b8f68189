//! Key runs: the dedup keys one commit added (or one compaction merged), sorted, in a file with
//! its own Bloom filter and fence keys, so a writer can ask "stored before?" without holding
//! every key ever stored in memory.
//!
//! File layout (little-endian), `RKR2`:
//! `magic "RKR2" | n_events u64 | n_rejects u64 | bloom_blocks u64 | fence_every u64`
//! `| event keys, sorted (16 B each) | reject keys (16 B each) | Bloom blocks (64 B each)`
//! `| fence keys: every fence_every-th event key (16 B each)`.
//! Files written before this format (no magic: event keys then reject keys, unsorted) are read
//! whole and sorted in memory.
//!
//! A small run is held in memory as a sorted array; a large one keeps only its Bloom filter
//! (about 10 bits a key, 1% false positives) and one fence key in 256, and answers a
//! Bloom-positive lookup by reading one 4 KiB block of keys from the file.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::dedup::Key;
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"RKR2";
const HEADER_BYTES: u64 = 4 + 8 * 4;
const KEY_BYTES: u64 = 16;
/// One fence key per this many event keys: a lookup reads at most this many keys (4 KiB).
const FENCE_EVERY: u64 = 256;
/// Runs with at most this many event keys are held in memory whole (1 MiB at most).
pub(crate) const IN_MEMORY_KEYS: u64 = 65_536;

/// A cache-blocked Bloom filter over keys that are already uniform hashes (Putze, Sanders and
/// Singler, "Cache-, Hash- and Space-Efficient Bloom Filters", 2007): each key sets 8 bits in
/// one 512-bit block, so a lookup touches one cache line. At 12 bits a key the false-positive
/// rate is about 1%.
pub(crate) struct BlockedBloom {
    blocks: Vec<[u64; 8]>,
}

const BITS_PER_KEY: u64 = 12;
const PROBES: u32 = 8;

impl BlockedBloom {
    pub(crate) fn with_capacity(keys: u64) -> Self {
        let blocks = (keys * BITS_PER_KEY).div_ceil(512).max(1);
        Self {
            blocks: vec![[0u64; 8]; usize::try_from(blocks).unwrap_or(usize::MAX)],
        }
    }

    /// The block and the 8 bit positions of a key: the block from the low 64 bits, seven
    /// bits from 9-bit slices of the high 64 bits and the eighth from the low half's top.
    fn locate(&self, key: Key) -> (usize, [u32; PROBES as usize]) {
        #[allow(clippy::cast_possible_truncation)]
        let (low, high) = (key as u64, (key >> 64) as u64);
        let block = usize::try_from(low % self.blocks.len() as u64).unwrap_or(0);
        let mut bits = [0u32; PROBES as usize];
        for (i, bit) in bits.iter_mut().enumerate() {
            let source = if i < 7 { high >> (i * 9) } else { low >> 55 };
            #[allow(clippy::cast_possible_truncation)]
            {
                *bit = (source & 511) as u32;
            }
        }
        (block, bits)
    }

    pub(crate) fn insert(&mut self, key: Key) {
        let (block, bits) = self.locate(key);
        for bit in bits {
            self.blocks[block][(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    pub(crate) fn may_contain(&self, key: Key) -> bool {
        let (block, bits) = self.locate(key);
        bits.iter()
            .all(|bit| self.blocks[block][(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    fn byte_len(&self) -> u64 {
        self.blocks.len() as u64 * 64
    }
}

/// Writes a run file: `event_keys` are sorted here; `reject_keys` are kept as given.
pub(crate) fn write_run(
    file: &mut File,
    event_keys: &mut [Key],
    reject_keys: &[Key],
) -> Result<()> {
    event_keys.sort_unstable();
    write_sorted_run(
        file,
        event_keys.iter().copied(),
        event_keys.len() as u64,
        reject_keys,
    )
}

/// Writes a run file from event keys that arrive already sorted (a merge), `n_events` of them.
pub(crate) fn write_sorted_run(
    file: &mut File,
    sorted_events: impl Iterator<Item = Key>,
    n_events: u64,
    reject_keys: &[Key],
) -> Result<()> {
    let io = |e| Error::io("write key run", "(run file)")(e);
    let mut bloom = BlockedBloom::with_capacity(n_events);
    let mut fences = Vec::with_capacity(usize::try_from(n_events / FENCE_EVERY + 1).unwrap_or(0));
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(MAGIC).map_err(io)?;
    for value in [
        n_events,
        reject_keys.len() as u64,
        bloom.blocks.len() as u64,
        FENCE_EVERY,
    ] {
        out.write_all(&value.to_le_bytes()).map_err(io)?;
    }
    let mut written = 0u64;
    for key in sorted_events {
        if written.is_multiple_of(FENCE_EVERY) {
            fences.push(key);
        }
        bloom.insert(key);
        out.write_all(&key.to_le_bytes()).map_err(io)?;
        written += 1;
    }
    if written != n_events {
        return Err(Error::InvalidArgument(format!(
            "key run: expected {n_events} event keys, got {written}"
        )));
    }
    for key in reject_keys {
        out.write_all(&key.to_le_bytes()).map_err(io)?;
    }
    for block in &bloom.blocks {
        for word in block {
            out.write_all(&word.to_le_bytes()).map_err(io)?;
        }
    }
    for key in &fences {
        out.write_all(&key.to_le_bytes()).map_err(io)?;
    }
    out.flush().map_err(io)
}

/// One run, opened for lookups.
pub(crate) enum KeyRun {
    /// Small (or legacy) runs: every event key, sorted.
    InMemory { keys: Vec<Key> },
    /// Large runs: the Bloom filter and fences in memory, the keys on disk.
    OnDisk {
        file: File,
        path: PathBuf,
        n_events: u64,
        bloom: BlockedBloom,
        fences: Vec<Key>,
    },
}

/// What opening a run yields: the run and its reject keys.
pub(crate) struct OpenedRun {
    pub run: KeyRun,
    pub reject_keys: Vec<Key>,
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn keys_from(bytes: &[u8]) -> Vec<Key> {
    bytes
        .chunks_exact(16)
        .map(|c| u128::from_le_bytes(c.try_into().expect("chunks_exact yields 16 bytes")))
        .collect()
}

/// Opens the run at `path`. `expected` is what its commit says it holds (events, rejects).
pub(crate) fn open_run(path: &Path, expected: (u64, u64)) -> Result<OpenedRun> {
    let corrupt = |reason: String| Error::CorruptStore {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(Error::io("open", path))?;
    let mut header = [0u8; HEADER_BYTES as usize];
    let read = read_prefix(&mut file, &mut header).map_err(Error::io("read", path))?;
    if read < 4 || &header[..4] != MAGIC {
        // The first format: every key, unsorted, events first.
        let mut bytes = header[..read].to_vec();
        file.read_to_end(&mut bytes)
            .map_err(Error::io("read", path))?;
        let total = usize::try_from(expected.0 + expected.1).unwrap_or(usize::MAX);
        if bytes.len() != total * 16 {
            return Err(corrupt(format!(
                "expected {total} keys, found {} bytes",
                bytes.len()
            )));
        }
        let mut keys = keys_from(&bytes);
        let reject_keys = keys.split_off(usize::try_from(expected.0).unwrap_or(0));
        keys.sort_unstable();
        return Ok(OpenedRun {
            run: KeyRun::InMemory { keys },
            reject_keys,
        });
    }
    if read < HEADER_BYTES as usize {
        return Err(corrupt("key run header is cut short".to_owned()));
    }
    let (n_events, n_rejects, blocks, fence_every) = (
        read_u64(&header, 4),
        read_u64(&header, 12),
        read_u64(&header, 20),
        read_u64(&header, 28),
    );
    if (n_events, n_rejects) != expected || fence_every == 0 {
        return Err(corrupt(format!(
            "key run holds {n_events} event and {n_rejects} reject keys; its commit says {} and {}",
            expected.0, expected.1
        )));
    }
    let read_at = |offset: u64, len: u64| -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut bytes, offset)
            .map_err(Error::io("read", path))?;
        Ok(bytes)
    };
    let rejects_at = HEADER_BYTES + n_events * KEY_BYTES;
    let reject_keys = keys_from(&read_at(rejects_at, n_rejects * KEY_BYTES)?);
    if n_events <= IN_MEMORY_KEYS {
        let keys = keys_from(&read_at(HEADER_BYTES, n_events * KEY_BYTES)?);
        return Ok(OpenedRun {
            run: KeyRun::InMemory { keys },
            reject_keys,
        });
    }
    let bloom_at = rejects_at + n_rejects * KEY_BYTES;
    let bloom_bytes = read_at(bloom_at, blocks * 64)?;
    let bloom = BlockedBloom {
        blocks: bloom_bytes
            .chunks_exact(64)
            .map(|block| {
                let mut words = [0u64; 8];
                for (i, word) in words.iter_mut().enumerate() {
                    *word = read_u64(block, i * 8);
                }
                words
            })
            .collect(),
    };
    let n_fences = n_events.div_ceil(fence_every);
    let fences = keys_from(&read_at(bloom_at + bloom.byte_len(), n_fences * KEY_BYTES)?);
    Ok(OpenedRun {
        run: KeyRun::OnDisk {
            file,
            path: path.to_path_buf(),
            n_events,
            bloom,
            fences,
        },
        reject_keys,
    })
}

fn read_prefix(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

impl KeyRun {
    /// Whether the run holds event key `key`.
    pub(crate) fn contains(&self, key: Key) -> Result<bool> {
        match self {
            Self::InMemory { keys } => Ok(keys.binary_search(&key).is_ok()),
            Self::OnDisk {
                file,
                path,
                n_events,
                bloom,
                fences,
            } => {
                if !bloom.may_contain(key) {
                    return Ok(false);
                }
                // The block that can hold the key starts at the last fence <= key.
                let block = match fences.binary_search(&key) {
                    Ok(_) => return Ok(true),
                    Err(0) => return Ok(false),
                    Err(i) => (i - 1) as u64,
                };
                let first = block * FENCE_EVERY;
                let count = FENCE_EVERY.min(n_events - first);
                let mut bytes = vec![0u8; usize::try_from(count * KEY_BYTES).unwrap_or(0)];
                file.read_exact_at(&mut bytes, HEADER_BYTES + first * KEY_BYTES)
                    .map_err(Error::io("read", path.as_path()))?;
                Ok(keys_from(&bytes).binary_search(&key).is_ok())
            }
        }
    }

    /// Bytes of memory the run holds.
    pub(crate) fn memory_bytes(&self) -> u64 {
        match self {
            Self::InMemory { keys } => keys.len() as u64 * KEY_BYTES,
            Self::OnDisk { bloom, fences, .. } => {
                bloom.byte_len() + fences.len() as u64 * KEY_BYTES
            }
        }
    }
}

/// Streams the sorted event keys of the run at `path` (for merging), `expected` as in
/// [`open_run`].
pub(crate) fn sorted_event_keys(
    path: &Path,
    expected: (u64, u64),
) -> Result<Box<dyn Iterator<Item = Result<Key>>>> {
    let opened = open_run(path, expected)?;
    match opened.run {
        KeyRun::InMemory { keys } => Ok(Box::new(keys.into_iter().map(Ok))),
        KeyRun::OnDisk {
            file,
            path,
            n_events,
            ..
        } => {
            const CHUNK_KEYS: u64 = 65_536;
            let mut next = 0u64;
            let mut buffer: std::vec::IntoIter<Key> = Vec::new().into_iter();
            Ok(Box::new(std::iter::from_fn(move || {
                if let Some(key) = buffer.next() {
                    return Some(Ok(key));
                }
                if next >= n_events {
                    return None;
                }
                let count = CHUNK_KEYS.min(n_events - next);
                let mut bytes = vec![0u8; usize::try_from(count * KEY_BYTES).unwrap_or(0)];
                if let Err(e) = file.read_exact_at(&mut bytes, HEADER_BYTES + next * KEY_BYTES) {
                    next = n_events;
                    return Some(Err(Error::io("read", path.as_path())(e)));
                }
                next += count;
                buffer = keys_from(&bytes).into_iter();
                buffer.next().map(Ok)
            })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dedup::event_key;

    fn run_of(n: u64) -> (tempfile::TempDir, PathBuf, Vec<Key>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.keys");
        let mut keys: Vec<Key> = (0..n).map(|i| event_key("m", &format!("e{i}"))).collect();
        let rejects = vec![event_key("r", "1")];
        let mut file = File::create(&path).expect("create");
        write_run(&mut file, &mut keys, &rejects).expect("write");
        (dir, path, keys)
    }

    #[test]
    fn a_large_run_finds_every_key_it_holds_and_almost_no_other() {
        let n = IN_MEMORY_KEYS * 3 + 17;
        let (_dir, path, keys) = run_of(n);
        let opened = open_run(&path, (n, 1)).expect("open");
        assert!(matches!(opened.run, KeyRun::OnDisk { .. }));
        assert_eq!(opened.reject_keys, vec![event_key("r", "1")]);
        for key in keys
            .iter()
            .step_by(97)
            .chain([keys[0], keys[keys.len() - 1]].iter())
        {
            assert!(opened.run.contains(*key).expect("lookup"), "{key}");
        }
        let absent = (0..20_000).filter(|i| {
            opened
                .run
                .contains(event_key("m", &format!("other{i}")))
                .expect("lookup")
        });
        assert_eq!(absent.count(), 0);
        // About 12 bits a key plus one fence in 256: far below the 16 bytes of the key itself.
        assert!(
            opened.run.memory_bytes() < n * 2,
            "{}",
            opened.run.memory_bytes()
        );
        let streamed: Vec<Key> = sorted_event_keys(&path, (n, 1))
            .expect("stream")
            .collect::<Result<_>>()
            .expect("keys");
        assert_eq!(streamed, keys);
    }

    #[test]
    fn the_bloom_filter_has_about_one_percent_false_positives() {
        let mut bloom = BlockedBloom::with_capacity(100_000);
        for i in 0..100_000 {
            bloom.insert(event_key("m", &format!("in{i}")));
        }
        let false_positives = (0..100_000)
            .filter(|i| bloom.may_contain(event_key("m", &format!("out{i}"))))
            .count();
        assert!(false_positives < 2_000, "{false_positives} of 100000");
    }

    #[test]
    fn first_format_runs_are_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.keys");
        let keys = [
            event_key("m", "b"),
            event_key("m", "a"),
            event_key("r", "x"),
        ];
        std::fs::write(&path, crate::store::dedup::encode_keys(&keys)).expect("write");
        let opened = open_run(&path, (2, 1)).expect("open");
        assert!(opened.run.contains(event_key("m", "a")).expect("lookup"));
        assert!(!opened.run.contains(event_key("r", "x")).expect("lookup"));
        assert_eq!(opened.reject_keys, vec![event_key("r", "x")]);
    }
}
