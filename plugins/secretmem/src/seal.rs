//! The container of every file this plugin writes: a magic, a mode byte, and the payload in
//! clear or sealed with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) under the
//! `--secret-key` key.
//!
//! ```text
//! "CRRSSEC1" | mode: 0 clear, 1 XChaCha20-Poly1305 | (mode 1) nonce: 24 bytes | payload
//! ```
//! The associated data is the file's own name and the dump's random id, so a sealed file
//! cannot be renamed into another one's place nor moved between dumps under the same key.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{AeadInOut, Generate, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// First bytes of every file of the plugin.
pub const MAGIC: &[u8; 8] = b"CRRSSEC1";
const MODE_CLEAR: u8 = 0;
const MODE_XCHACHA: u8 = 1;
const NONCE_LEN: usize = 24;
const SEAL_OVERHEAD: usize = NONCE_LEN + 16;
/// Bytes a file has beyond its payload at most (magic, mode, nonce, tag).
pub const HEAD_ROOM: usize = MAGIC.len() + 1 + SEAL_OVERHEAD;

/// Why a key file or a sealed file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file could not be read.
    #[error("secret key file {path}: {source}")]
    KeyRead {
        /// The key file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The key file holds neither 32 bytes nor 64 hex digits.
    #[error(
        "secret key file {path}: holds {len} bytes; a key is 32 raw bytes or 64 hex digits (e.g. `head -c 32 /dev/urandom > key`)"
    )]
    KeyFormat {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The file does not start with [`MAGIC`] and a known mode.
    #[error("{file}: not a criu-rs secretmem file (bad magic or mode)")]
    Format {
        /// The file name.
        file: String,
    },
    /// The file is encrypted and no key was given.
    #[error("{file} is encrypted: restore with --secret-key FILE (the key of the dump)")]
    NeedKey {
        /// The file name.
        file: String,
    },
    /// A key was given but the file is in clear: refused rather than trusted unchecked.
    #[error(
        "{file} is not encrypted, but --secret-key was given: the images were dumped without a key (restore without --secret-key)"
    )]
    NotSealed {
        /// The file name.
        file: String,
    },
    /// The tag does not match: another key, or a changed file.
    #[error("{file}: authentication failed: wrong --secret-key, or the image was changed")]
    Tampered {
        /// The file name.
        file: String,
    },
    /// The random nonce could not be drawn or the cipher refused the message.
    #[error("{file}: encryption failed ({why})")]
    Encrypt {
        /// The file name.
        file: String,
        /// Why.
        why: String,
    },
}

/// The 32-byte key, wiped from memory when dropped.
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Reads a key file: exactly 32 bytes, or 64 hex digits (surrounding whitespace allowed).
    pub fn load(path: &Path) -> Result<Self, SealError> {
        let raw = Zeroizing::new(std::fs::read(path).map_err(|source| SealError::KeyRead {
            path: path.to_owned(),
            source,
        })?);
        use std::os::unix::fs::PermissionsExt;
        if let Ok(md) = std::fs::metadata(path)
            && md.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the secret key file is readable by other users: chmod 600 it"
            );
        }
        Self::parse(&raw).ok_or_else(|| SealError::KeyFormat {
            path: path.to_owned(),
            len: raw.len(),
        })
    }

    /// The key in `raw` (32 bytes or 64 hex digits), `None` when it is neither.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        if raw.len() == 32 {
            key.copy_from_slice(raw);
            return Some(SecretKey(key));
        }
        let text = raw.trim_ascii();
        if text.len() != 64 {
            return None;
        }
        for (i, pair) in text.chunks(2).enumerate() {
            let hex = |c: u8| (c as char).to_digit(16);
            key[i] = (hex(pair[0])? * 16 + hex(pair[1])?) as u8;
        }
        Some(SecretKey(key))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        // The length is fixed, so this cannot fail.
        XChaCha20Poly1305::new(&(*self.0).into())
    }
}

fn aad(file: &str, dump_id: &[u8; 16]) -> Vec<u8> {
    let mut a = Vec::with_capacity(file.len() + 17);
    a.extend_from_slice(file.as_bytes());
    a.push(0);
    a.extend_from_slice(dump_id);
    a
}

/// Wraps `payload` for file `file` of dump `dump_id`: in clear without a key, else sealed.
/// The buffer is worked on in place and returned as the file's bytes: give it a capacity of
/// [`HEAD_ROOM`] bytes beyond the payload and no copy of the secret is left behind by a
/// reallocation.
pub fn seal(
    key: Option<&SecretKey>,
    file: &str,
    dump_id: &[u8; 16],
    mut payload: Zeroizing<Vec<u8>>,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let mut head = MAGIC.to_vec();
    match key {
        None => head.push(MODE_CLEAR),
        Some(key) => {
            head.push(MODE_XCHACHA);
            let nonce = XNonce::try_generate().map_err(|e| SealError::Encrypt {
                file: file.into(),
                why: format!("no random nonce: {e}"),
            })?;
            key.cipher()
                .encrypt_in_place(&nonce, &aad(file, dump_id), &mut *payload)
                .map_err(|e| SealError::Encrypt {
                    file: file.into(),
                    why: e.to_string(),
                })?;
            head.extend_from_slice(&nonce);
        }
    }
    payload.splice(0..0, head);
    Ok(payload)
}

/// Unwraps the bytes of file `file` of dump `dump_id`: checks the mode against the key
/// (an encrypted file needs the key; with a key, a clear file is refused) and the tag.
pub fn open(
    key: Option<&SecretKey>,
    file: &str,
    dump_id: &[u8; 16],
    mut bytes: Vec<u8>,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let head = MAGIC.len() + 1;
    if bytes.len() < head || &bytes[..MAGIC.len()] != MAGIC {
        return Err(SealError::Format { file: file.into() });
    }
    match (bytes[MAGIC.len()], key) {
        (MODE_CLEAR, None) => {
            bytes.drain(..head);
            Ok(Zeroizing::new(bytes))
        }
        (MODE_CLEAR, Some(_)) => Err(SealError::NotSealed { file: file.into() }),
        (MODE_XCHACHA, None) => Err(SealError::NeedKey { file: file.into() }),
        (MODE_XCHACHA, Some(key)) => {
            if bytes.len() < head + SEAL_OVERHEAD {
                return Err(SealError::Tampered { file: file.into() });
            }
            let nonce = XNonce::try_from(&bytes[head..head + NONCE_LEN])
                .map_err(|_| SealError::Format { file: file.into() })?;
            bytes.drain(..head + NONCE_LEN);
            let mut body = Zeroizing::new(bytes);
            key.cipher()
                .decrypt_in_place(&nonce, &aad(file, dump_id), &mut *body)
                .map_err(|_| SealError::Tampered { file: file.into() })?;
            Ok(body)
        }
        _ => Err(SealError::Format { file: file.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: [u8; 16] = [7; 16];

    fn key(b: u8) -> SecretKey {
        SecretKey::parse(&[b; 32]).unwrap()
    }

    #[test]
    fn key_formats() {
        assert!(SecretKey::parse(&[1; 32]).is_some());
        let hex = format!("{}\n", "ab".repeat(32));
        let k = SecretKey::parse(hex.as_bytes()).unwrap();
        assert_eq!(*k.0, [0xab; 32]);
        assert!(SecretKey::parse(&[1; 31]).is_none());
        assert!(SecretKey::parse("zz".repeat(32).as_bytes()).is_none());
        assert_eq!(format!("{k:?}"), "SecretKey(..)");
    }

    #[test]
    fn refusals() {
        let data = || Zeroizing::new(b"secret".to_vec());
        let sealed = seal(Some(&key(1)), "f", &ID, data()).unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let e = open(None, "f", &ID, sealed.to_vec()).unwrap_err();
        assert!(e.to_string().contains("--secret-key"), "{e}");
        let e = open(Some(&key(2)), "f", &ID, sealed.to_vec()).unwrap_err();
        assert!(matches!(e, SealError::Tampered { .. }), "{e}");
        // Another file's name or another dump: refused as well.
        assert!(open(Some(&key(1)), "g", &ID, sealed.to_vec()).is_err());
        assert!(open(Some(&key(1)), "f", &[8; 16], sealed.to_vec()).is_err());
        let mut bad = sealed.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            open(Some(&key(1)), "f", &ID, bad),
            Err(SealError::Tampered { .. })
        ));
        assert!(matches!(
            open(Some(&key(1)), "f", &ID, sealed[..20].to_vec()),
            Err(SealError::Tampered { .. })
        ));
        let clear = seal(None, "f", &ID, data()).unwrap();
        assert!(matches!(
            open(Some(&key(1)), "f", &ID, clear.to_vec()),
            Err(SealError::NotSealed { .. })
        ));
        assert_eq!(
            &open(None, "f", &ID, clear.to_vec()).unwrap()[..],
            b"secret"
        );
        assert!(matches!(
            open(None, "f", &ID, b"CRRSSEC9x".to_vec()),
            Err(SealError::Format { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096), k in any::<u8>(), with_key in any::<bool>()) {
            let key = with_key.then(|| key(k));
            let bytes = seal(key.as_ref(), "x.bin", &ID, Zeroizing::new(data.clone())).unwrap();
            let back = open(key.as_ref(), "x.bin", &ID, bytes.to_vec()).unwrap();
            prop_assert_eq!(&back[..], &data[..]);
        }
    }
}
