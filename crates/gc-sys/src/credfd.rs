//! The credential memfd of a user endpoint (ENDPOINT §4.5 step 5, PROTOCOL-ENDPOINT §5.4).
//!
//! The MEP never hands a UEP its broker credentials in plain text: it creates an anonymous
//! memory file ([`CredentialFd::create`], `memfd_create("dyn")`, mode 0600, owned by the MEP),
//! writes a [Fernet](https://github.com/fernet/spec) token of `{"amqp_creds": {...}}` into it
//! under a key made fresh for that UEP, and gives the child a **read-only** handle of it as
//! descriptor 3. The key travels in the stdin document (`enckey`), which the UEP reads and
//! consumes before it runs any task. When the service sends new credentials for a running UEP,
//! the MEP rewrites the token in place ([`CredentialFd::write`]); the UEP re-reads it
//! ([`read_token`]) when it reconnects.
//!
//! Fernet as upstream uses it (`cryptography.fernet`): version byte `0x80`, 8-byte big-endian
//! timestamp, 16-byte random IV, AES-128-CBC with PKCS#7 padding, HMAC-SHA256 over all of that
//! with the first half of the 32-byte key; the text is URL-safe base64 with padding. Tokens
//! are interchangeable with Python's `Fernet(key).encrypt/decrypt` (checked against the
//! specification's test vector). No time-to-live is enforced on decryption, as upstream.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

const VERSION: u8 = 0x80;
/// Version, timestamp, IV.
const HEADER: usize = 1 + 8 + 16;
const MAC_LEN: usize = 32;

/// Why credentials could not be stored or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// A system call on the memory file failed.
    #[error("credential file: {0}")]
    Io(#[from] io::Error),
    /// The key is not URL-safe base64 of 32 bytes.
    #[error("invalid Fernet key")]
    Key,
    /// The token is not base64, too short, of another version, fails its HMAC, or does not
    /// decrypt (Python's `InvalidToken`).
    #[error("invalid Fernet token")]
    Token,
}

/// A Fernet key: 16 bytes of signing key followed by 16 bytes of encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct FernetKey([u8; 32]);

impl std::fmt::Debug for FernetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FernetKey(<redacted>)")
    }
}

/// Fills `buf` from the kernel's random source (`getrandom(2)`).
fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe a live, writable slice for the whole call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n.unsigned_abs();
    }
    Ok(())
}

impl FernetKey {
    /// A fresh random key.
    pub fn generate() -> io::Result<FernetKey> {
        let mut key = [0u8; 32];
        random_bytes(&mut key)?;
        Ok(FernetKey(key))
    }

    /// Parses the 44-character text form (URL-safe base64 with padding).
    pub fn from_text(text: &str) -> Result<FernetKey, CredentialError> {
        let bytes = URL_SAFE
            .decode(text.trim())
            .map_err(|_| CredentialError::Key)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CredentialError::Key)?;
        Ok(FernetKey(key))
    }

    /// The text form, as `Fernet.generate_key()` prints it.
    #[must_use]
    pub fn to_text(&self) -> String {
        URL_SAFE.encode(self.0)
    }

    fn signer(&self) -> Hmac<Sha256> {
        // An HMAC key of any length is accepted.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..16]).expect("HMAC takes any key length")
    }

    /// A token of `plaintext` with the current time and a random IV.
    pub fn encrypt(&self, plaintext: &[u8]) -> io::Result<String> {
        let mut iv = [0u8; 16];
        random_bytes(&mut iv)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(self.encrypt_at(plaintext, now, iv))
    }

    fn encrypt_at(&self, plaintext: &[u8], timestamp: u64, iv: [u8; 16]) -> String {
        let mut buf = vec![0u8; plaintext.len() + 16];
        buf[..plaintext.len()].copy_from_slice(plaintext);
        let cipher = Aes128CbcEnc::new(self.0[16..].into(), &iv.into());
        let ciphertext_len = cipher
            .encrypt_padded_mut::<Pkcs7>(&mut buf, plaintext.len())
            .map(|c| c.len())
            .expect("the buffer has room for a full padding block");
        let mut token = Vec::with_capacity(HEADER + ciphertext_len + MAC_LEN);
        token.push(VERSION);
        token.extend_from_slice(&timestamp.to_be_bytes());
        token.extend_from_slice(&iv);
        token.extend_from_slice(&buf[..ciphertext_len]);
        let mut mac = self.signer();
        mac.update(&token);
        token.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE.encode(token)
    }

    /// The plaintext of `token` (whitespace around it is ignored).
    pub fn decrypt(&self, token: &[u8]) -> Result<Vec<u8>, CredentialError> {
        let text = token.trim_ascii();
        let raw = URL_SAFE.decode(text).map_err(|_| CredentialError::Token)?;
        if raw.len() < HEADER + 16 + MAC_LEN || raw[0] != VERSION {
            return Err(CredentialError::Token);
        }
        let (signed, tag) = raw.split_at(raw.len() - MAC_LEN);
        let mut mac = self.signer();
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| CredentialError::Token)?;
        let iv: [u8; 16] = signed[9..HEADER]
            .try_into()
            .map_err(|_| CredentialError::Token)?;
        let mut ciphertext = signed[HEADER..].to_vec();
        let cipher = Aes128CbcDec::new(self.0[16..].into(), &iv.into());
        let plain = cipher
            .decrypt_padded_mut::<Pkcs7>(&mut ciphertext)
            .map_err(|_| CredentialError::Token)?;
        Ok(plain.to_vec())
    }
}

/// The MEP's side of one UEP's credential memfd: the writable handle and the key.
#[derive(Debug)]
pub struct CredentialFd {
    file: File,
    key: FernetKey,
}

impl CredentialFd {
    /// A new, empty memory file (`memfd_create("dyn", MFD_CLOEXEC)`, mode 0600) and a fresh key.
    pub fn create() -> Result<CredentialFd, CredentialError> {
        // SAFETY: the name is a NUL-terminated literal; flags are integers.
        let fd = unsafe { libc::memfd_create(c"dyn".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: memfd_create succeeded, so `fd` is an open descriptor nobody else owns.
        let file = File::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        // Only the MEP's user (root) may re-open it through /proc; the child reads through the
        // handle it is given.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(CredentialFd {
            file,
            key: FernetKey::generate()?,
        })
    }

    /// The key, for the stdin document's `enckey`.
    #[must_use]
    pub fn key(&self) -> &FernetKey {
        &self.key
    }

    /// A new read-only handle of the file (close-on-exec), for the child's descriptor 3: the
    /// child can read the token but not change it.
    pub fn reader(&self) -> Result<OwnedFd, CredentialError> {
        let path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        let file = std::fs::OpenOptions::new().read(true).open(path)?;
        Ok(OwnedFd::from(file))
    }

    /// Replaces the content with a token of `plaintext` (truncate, write at 0, fsync).
    pub fn write(&self, plaintext: &[u8]) -> Result<(), CredentialError> {
        let token = self.key.encrypt(plaintext)?;
        self.file.set_len(0)?;
        self.file.write_all_at(token.as_bytes(), 0)?;
        self.file.sync_all()?;
        Ok(())
    }
}

/// Reads the whole token from a credential file (from offset 0, whatever the file position)
/// and decrypts it with `key`.
pub fn read_token(file: &File, key: &FernetKey) -> Result<Vec<u8>, CredentialError> {
    let mut token = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = file.read_at(&mut chunk, token.len() as u64)?;
        if n == 0 {
            break;
        }
        token.extend_from_slice(&chunk[..n]);
    }
    key.decrypt(&token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "generate" vector of the Fernet specification (github.com/fernet/spec).
    #[test]
    fn specification_vector() {
        let key = FernetKey::from_text("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=").unwrap();
        let token = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==";
        let iv: [u8; 16] = std::array::from_fn(|i| u8::try_from(i).unwrap());
        assert_eq!(key.encrypt_at(b"hello", 499_162_800, iv), token);
        assert_eq!(key.decrypt(token.as_bytes()).unwrap(), b"hello");
        assert_eq!(
            key.to_text(),
            "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
        );
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let key = FernetKey::generate().unwrap();
        let other = FernetKey::generate().unwrap();
        assert_ne!(key, other);
        let token = key.encrypt(b"{\"amqp_creds\":{}}").unwrap();
        assert!(matches!(
            other.decrypt(token.as_bytes()),
            Err(CredentialError::Token)
        ));
        let mut raw = URL_SAFE.decode(&token).unwrap();
        let last = raw.len() - 40;
        raw[last] ^= 1;
        assert!(matches!(
            key.decrypt(URL_SAFE.encode(&raw).as_bytes()),
            Err(CredentialError::Token)
        ));
        assert!(matches!(
            key.decrypt(b"not base64!"),
            Err(CredentialError::Token)
        ));
        assert!(matches!(
            FernetKey::from_text("c2hvcnQ="),
            Err(CredentialError::Key)
        ));
        assert!(!format!("{key:?}").contains(&key.to_text()));
    }

    #[test]
    fn memfd_is_private_rewritable_and_read_only_for_the_reader() {
        use std::os::unix::fs::MetadataExt;
        let creds = CredentialFd::create().unwrap();
        assert_eq!(creds.file.metadata().unwrap().mode() & 0o777, 0o600);
        creds.write(b"first, and longer than the second").unwrap();
        let reader = File::from(creds.reader().unwrap());
        assert_eq!(
            read_token(&reader, creds.key()).unwrap(),
            b"first, and longer than the second"
        );
        // A rewrite is seen by the existing handle (same file), from offset 0.
        creds.write(b"second").unwrap();
        assert_eq!(read_token(&reader, creds.key()).unwrap(), b"second");
        // The handle is read-only.
        let file = reader;
        assert!(file.write_at(b"x", 0).is_err());
        // The key round-trips through its text form (as in the stdin document).
        let key = FernetKey::from_text(&creds.key().to_text()).unwrap();
        assert_eq!(read_token(&file, &key).unwrap(), b"second");
    }
}
