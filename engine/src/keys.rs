//! API keys: bearer keys, each of one merchant with a scope (`read` < `write` < `admin`).
//!
//! A key is `rk_<id>_<secret>`: the id finds its entry, the secret proves it. The full key is
//! shown once, when it is created; only its SHA-256 is stored (`keys.json` in the data
//! directory, readable by its owner only), so a copied data directory gives no one a key.
//! Revoked keys stay listed with the time of revocation, and a data directory that ever had a
//! key never falls back to the open mode of one that had none.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::fsutil;

const KEYS_FILE: &str = "keys.json";
const KEYS_LOCK: &str = "keys.lock";
const PREFIX: &str = "rk_";

/// What a key may do; each scope includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read the merchant's recommendations, profiles, reports, audiences, campaigns, plans.
    Read,
    /// And post the merchant's events.
    Write,
    /// And manage the merchant's settings, audiences and campaigns.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            _ => Err(Error::InvalidArgument(format!(
                "unknown scope {text:?}: use read, write or admin"
            ))),
        }
    }
}

/// A stored key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub id: String,
    pub merchant_id: String,
    pub scope: Scope,
    /// Hex SHA-256 of the whole key.
    pub sha256: String,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    keys: Vec<ApiKey>,
}

pub fn keys_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_FILE)
}

/// Hex SHA-256 of `key`, as stored.
fn digest(key: &str) -> String {
    use std::fmt::Write;
    Sha256::digest(key.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// The 32 bytes a 64-digit lowercase hex digest spells.
fn hex_digest_bytes(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(bytes)
}

fn read_keys(data_dir: &Path) -> Result<Vec<ApiKey>> {
    let path = keys_path(data_dir);
    match fs::read(&path) {
        Ok(bytes) => {
            let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| {
                Error::InvalidArgument(format!(
                    "{} is not a valid key file: {e}; restore it from a backup",
                    path.display()
                ))
            })?;
            Ok(file.keys)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("read", &path)(e)),
    }
}

fn write_keys(data_dir: &Path, keys: Vec<ApiKey>) -> Result<()> {
    let path = keys_path(data_dir);
    let json = serde_json::to_vec_pretty(&KeyFile { keys }).expect("keys always serialize");
    fsutil::write_atomic(&path, |f| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(Error::io("set permissions of", &path))?;
        }
        std::io::Write::write_all(f, &json).map_err(Error::io("write", &path))
    })
}

/// Changes the key file under its lock.
fn update_keys<T>(
    data_dir: &Path,
    change: impl FnOnce(&mut Vec<ApiKey>) -> Result<T>,
) -> Result<T> {
    fs::create_dir_all(data_dir).map_err(Error::io("create directory", data_dir))?;
    let _lock = fsutil::lock_exclusive(&data_dir.join(KEYS_LOCK))?;
    let mut keys = read_keys(data_dir)?;
    let out = change(&mut keys)?;
    write_keys(data_dir, keys)?;
    Ok(out)
}

/// Creates a key of `merchant_id` with `scope`; returns its entry and the key itself, which
/// is never stored and cannot be shown again.
pub fn create_key(
    data_dir: &Path,
    merchant_id: &str,
    scope: Scope,
    now_ms: i64,
) -> Result<(ApiKey, String)> {
    crate::event::check_id("merchant_id", merchant_id).map_err(Error::InvalidArgument)?;
    let mut rng = rand::rng();
    let id: String = (0..6)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect();
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect();
    let key = format!("{PREFIX}{id}_{secret}");
    let entry = ApiKey {
        id,
        merchant_id: merchant_id.to_owned(),
        scope,
        sha256: digest(&key),
        created_at_ms: now_ms,
        revoked_at_ms: None,
    };
    let stored = entry.clone();
    update_keys(data_dir, move |keys| {
        keys.push(stored);
        Ok(())
    })?;
    Ok((entry, key))
}

/// Every key of the data directory (of one merchant, when given), oldest first.
pub fn list_keys(data_dir: &Path, merchant_id: Option<&str>) -> Result<Vec<ApiKey>> {
    Ok(read_keys(data_dir)?
        .into_iter()
        .filter(|k| merchant_id.is_none_or(|m| k.merchant_id == m))
        .collect())
}

/// Revokes the key `id`: it stops working at once.
pub fn revoke_key(data_dir: &Path, id: &str, now_ms: i64) -> Result<ApiKey> {
    update_keys(data_dir, |keys| {
        let key = keys.iter_mut().find(|k| k.id == id).ok_or_else(|| {
            Error::NotFound(format!(
                "no key with id {id:?}; `recur keys list` shows the keys"
            ))
        })?;
        key.revoked_at_ms.get_or_insert(now_ms);
        Ok(key.clone())
    })
}

/// The keys a server checks requests against.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    /// Shared: a server hands each request's key to its handler without copying it. With
    /// each key, its SHA-256 as bytes, compared without formatting anything per request.
    by_id: HashMap<String, (Arc<ApiKey>, [u8; 32])>,
    ever_created: bool,
}

impl KeyRing {
    pub fn load(data_dir: &Path) -> Result<Self> {
        let keys = read_keys(data_dir)?;
        Ok(Self {
            ever_created: !keys.is_empty(),
            by_id: keys
                .into_iter()
                .filter(|k| k.revoked_at_ms.is_none())
                .filter_map(|k| {
                    // A stored digest that is not 64 hex digits matches no key.
                    let bytes = hex_digest_bytes(&k.sha256)?;
                    Some((k.id.clone(), (Arc::new(k), bytes)))
                })
                .collect(),
        })
    }

    /// No key was ever created: the API runs open (on loopback only).
    pub fn is_open(&self) -> bool {
        !self.ever_created
    }

    /// The live key `presented` is, if it is one.
    pub fn authenticate(&self, presented: &str) -> Option<&Arc<ApiKey>> {
        let rest = presented.strip_prefix(PREFIX)?;
        let (id, _) = rest.split_once('_')?;
        let (key, sha256) = self.by_id.get(id)?;
        // Comparing digests, not secrets: how long a comparison of two SHA-256 values takes
        // says nothing useful about the secret.
        (Sha256::digest(presented.as_bytes()).as_slice() == sha256.as_slice()).then_some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_works_until_revoked_and_only_its_hash_is_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(KeyRing::load(dir.path()).expect("ring").is_open());
        let (entry, key) = create_key(dir.path(), "m1", Scope::Write, 1).expect("create");
        let stored = fs::read_to_string(keys_path(dir.path())).expect("file");
        assert!(!stored.contains(&key) && !stored.contains(&key[12..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(keys_path(dir.path()))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "owner only: {mode:o}");
        }
        let ring = KeyRing::load(dir.path()).expect("ring");
        assert!(!ring.is_open());
        assert_eq!(ring.authenticate(&key).map(|k| &**k), Some(&entry));
        let mut forged = key.clone();
        forged.pop();
        forged.push(if key.ends_with('0') { '1' } else { '0' });
        assert_eq!(ring.authenticate(&forged), None);
        assert_eq!(ring.authenticate("garbage"), None);
        assert_eq!(ring.authenticate(""), None);

        revoke_key(dir.path(), &entry.id, 2).expect("revoke");
        let ring = KeyRing::load(dir.path()).expect("ring");
        assert_eq!(ring.authenticate(&key), None);
        assert!(!ring.is_open(), "revoking every key does not open the API");
        assert!(revoke_key(dir.path(), "nope", 3).is_err());
        assert_eq!(list_keys(dir.path(), Some("m1")).expect("list").len(), 1);
        assert!(list_keys(dir.path(), Some("m2")).expect("list").is_empty());
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
    }
}
