//! Envelope encryption and the keys derived from the master key.
//!
//! Each subject has a random data key (DEK) stored only wrapped by the master key; each template is
//! sealed under its subject's DEK. Both use AES-256-GCM with a fresh random 96-bit nonce, and the
//! associated data binds every ciphertext to where it belongs (vault, subject, template, model,
//! dimension), so a ciphertext moved to another row, subject or vault fails to open. The exact byte
//! layouts are in `docs/format.md`.

use aes_gcm::aead::{self, AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use zeroize::Zeroizing;

use crate::wiped::WipedVec;

use crate::error::{Error, Result};
use crate::keys::MasterKey;

/// AES-GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Length of a data key.
pub(crate) const DATA_KEY_LEN: usize = 32;
/// Length of a wrapped data key on disk: nonce, encrypted key, tag.
pub(crate) const WRAPPED_KEY_LEN: usize = NONCE_LEN + DATA_KEY_LEN + TAG_LEN;

const KEY_CHECK_INFO: &[u8] = b"facevault v1 key check";
const KEY_CHECK_MESSAGE: &[u8] = b"facevault v1 key check value";
const AUDIT_MAC_INFO: &[u8] = b"facevault v1 audit mac";
const RECORD_MAC_INFO: &[u8] = b"facevault v1 record mac";
const KEY_WRAPPING_INFO: &[u8] = b"facevault v1 key wrapping";
const SECRET_WRAPPING_INFO: &[u8] = b"facevault v2 secret wrapping";
const BACKUP_INFO: &[u8] = b"facevault v2 backup";
const BUNDLE_SIGNING_INFO: &[u8] = b"facevault v2 bundle signing";
const ROOT_WRAPPING_INFO: &[u8] = b"facevault v2 root key wrapping";
const ROOT_AAD_LABEL: &[u8] = b"facevault v2 root key";
const SECRET_AAD_LABEL: &[u8] = b"facevault v2 sealed secret";
const WRAP_AAD_LABEL: &[u8] = b"facevault v1 wrapped data key";
const TEMPLATE_AAD_LABEL: &[u8] = b"facevault v1 template";
const PERSONAL_AAD_LABEL: &[u8] = b"facevault v1 personal data";

/// Fills an array from the operating system's CSPRNG.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).map_err(|_| Error::Crypto)?;
    Ok(bytes)
}

/// Bytes as lowercase hexadecimal: IDs, hashes and public keys in messages and metadata (never a
/// secret).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 random bytes for a secret, zeroed when dropped.
pub(crate) fn random_secret() -> Result<Zeroizing<[u8; 32]>> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(bytes.as_mut_slice())
        .map_err(|_| Error::Crypto)?;
    Ok(bytes)
}

/// A subject's data key. Never printed, never stored unwrapped.
pub(crate) struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    pub(crate) fn random() -> Result<Self> {
        Ok(Self(Zeroizing::new(random_array()?)))
    }

    fn cipher(&self) -> Aes256Gcm {
        cipher(&self.0)
    }
}

pub(crate) fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

/// Encrypts `buffer` in place under `cipher`; returns the tag.
pub(crate) fn seal_in_place(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buffer: &mut [u8],
) -> Result<[u8; TAG_LEN]> {
    let tag = cipher
        .encrypt_inout_detached(nonce.into(), aad, buffer.into())
        .map_err(|_| Error::Crypto)?;
    Ok(tag.into())
}

/// Decrypts `buffer` in place under `cipher`. `None` (with `buffer` unspecified) when the nonce or
/// tag has the wrong length or the tag does not match.
pub(crate) fn open_in_place(
    cipher: &Aes256Gcm,
    nonce: &[u8],
    aad: &[u8],
    buffer: &mut [u8],
    tag: &[u8],
) -> Option<()> {
    open_inout(cipher, nonce, aad, buffer.into(), tag)
}

/// [`open_in_place`] for a buffer that may read from one slice and write to another.
fn open_inout(
    cipher: &Aes256Gcm,
    nonce: &[u8],
    aad: &[u8],
    buffer: aead::inout::InOutBuf<'_, '_, u8>,
    tag: &[u8],
) -> Option<()> {
    let nonce = <&aead::Nonce<Aes256Gcm>>::try_from(nonce).ok()?;
    let tag = <&aead::Tag<Aes256Gcm>>::try_from(tag).ok()?;
    cipher.decrypt_inout_detached(nonce, aad, buffer, tag).ok()
}

/// A vault's root key (format version 2): random, stored only wrapped by the master key, and the
/// input of every other key. Changing the master key re-wraps this one key and changes nothing
/// else. Never printed, never stored unwrapped.
pub(crate) struct RootKey(Zeroizing<[u8; 32]>);

impl RootKey {
    pub(crate) fn random() -> Result<Self> {
        Ok(Self(Zeroizing::new(random_array()?)))
    }

    /// The AES-256-GCM key that wraps the root key under `master`, for this vault.
    fn wrapping_cipher(master: &MasterKey, vault_id: &[u8; 16]) -> Result<Aes256Gcm> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, vault_id).extract(master.expose_secret());
        let mut key = Zeroizing::new([0u8; 32]);
        prk.expand(&[ROOT_WRAPPING_INFO], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(key.as_mut_slice()))
            .map_err(|_| Error::Crypto)?;
        Ok(cipher(&key))
    }

    /// nonce ‖ encrypted root key ‖ tag (60 bytes), bound to the vault.
    pub(crate) fn wrap(&self, master: &MasterKey, vault_id: &[u8; 16]) -> Result<Vec<u8>> {
        let aad = [ROOT_AAD_LABEL, vault_id].concat();
        seal_secret_with(&Self::wrapping_cipher(master, vault_id)?, &aad, &self.0)
    }

    /// The root key, or `None` when `master` is not the key it was wrapped under (or a byte of
    /// the wrapped key, or the vault ID, was altered).
    pub(crate) fn unwrap(master: &MasterKey, vault_id: &[u8; 16], wrapped: &[u8]) -> Result<Option<Self>> {
        let aad = [ROOT_AAD_LABEL, vault_id].concat();
        Ok(open_secret_with(&Self::wrapping_cipher(master, vault_id)?, &aad, wrapped).map(Self))
    }
}

/// The key of the whole-file layer (feature `sqlcipher`): SQLCipher's raw key for the database
/// file. It comes from the master key alone, since the vault ID is inside the file it opens;
/// SQLCipher's own random salt in the file's first 16 bytes keeps two files' page keys apart.
#[cfg(feature = "sqlcipher")]
pub(crate) struct FileKey(Zeroizing<[u8; 32]>);

#[cfg(feature = "sqlcipher")]
impl FileKey {
    pub(crate) fn derive(master: &MasterKey) -> Result<Self> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, FILE_KEY_SALT).extract(master.expose_secret());
        let mut key = Zeroizing::new([0u8; 32]);
        prk.expand(&[FILE_KEY_INFO], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(key.as_mut_slice()))
            .map_err(|_| Error::Crypto)?;
        Ok(Self(key))
    }

    /// SQLCipher's raw-key form, `x'<64 hex digits>'`: used as the page key's input as it is,
    /// without SQLCipher's PBKDF2, which a random 256-bit key does not need.
    pub(crate) fn sqlcipher_literal(&self) -> Zeroizing<String> {
        let mut literal = Zeroizing::new(String::with_capacity(67));
        literal.push_str("x'");
        for byte in self.0.iter() {
            literal.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            literal.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        }
        literal.push('\'');
        literal
    }
}

#[cfg(feature = "sqlcipher")]
const FILE_KEY_SALT: &[u8] = b"facevault v2 whole-file layer";
#[cfg(feature = "sqlcipher")]
const FILE_KEY_INFO: &[u8] = b"facevault v2 sqlcipher file key";
#[cfg(feature = "sqlcipher")]
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// A 32-byte secret sealed under `cipher`: nonce ‖ ciphertext ‖ tag.
fn seal_secret_with(cipher: &Aes256Gcm, aad: &[u8], secret: &[u8; 32]) -> Result<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = random_array()?;
    let mut buffer = Vec::with_capacity(WRAPPED_KEY_LEN);
    buffer.extend_from_slice(&nonce);
    buffer.extend_from_slice(secret);
    let tag = seal_in_place(cipher, &nonce, aad, &mut buffer[NONCE_LEN..])?;
    buffer.extend_from_slice(&tag);
    Ok(buffer)
}

fn open_secret_with(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    if sealed.len() != WRAPPED_KEY_LEN {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(32);
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(ciphertext);
    open_in_place(cipher, nonce, aad, secret.as_mut_slice(), tag)?;
    Some(secret)
}

/// The keys a vault derives from its root key (format version 1: from the master key itself)
/// and its own vault ID.
pub(crate) struct VaultKeys {
    /// The root key, kept to re-wrap it under a new master key (rekey).
    root: RootKey,
    /// The key-wrapping key: derived, so the root key itself serves only as HKDF input.
    wrapping: Zeroizing<[u8; 32]>,
    /// Wraps the vault's other stored secrets (the audit epoch key).
    secrets: Zeroizing<[u8; 32]>,
    /// Format version 1's audit MAC key: read only to check a version-1 chain before migrating it.
    legacy_audit: hmac::Key,
    /// Signs export bundles (Ed25519); its public key identifies the vault to a recipient.
    bundle_signing: ring::signature::Ed25519KeyPair,
    /// Seals backups (AES-256-GCM).
    backup: Zeroizing<[u8; 32]>,
    check: hmac::Key,
    records: hmac::Key,
}

impl VaultKeys {
    /// Format version 2: every key from the vault's root key.
    pub(crate) fn from_root(root: RootKey, vault_id: &[u8; 16]) -> Result<Self> {
        Self::derive_from(root, vault_id)
    }

    /// Format version 1: every key from the master key.
    pub(crate) fn derive_v1(master: MasterKey, vault_id: &[u8; 16]) -> Result<Self> {
        Self::derive_from(RootKey(Zeroizing::new(*master.expose_secret())), vault_id)
    }

    fn derive_from(root: RootKey, vault_id: &[u8; 16]) -> Result<Self> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, vault_id).extract(root.0.as_slice());
        let expand = |info: &'static [u8]| -> Result<hmac::Key> {
            let info = [info];
            let okm = prk.expand(&info, hmac::HMAC_SHA256).map_err(|_| Error::Crypto)?;
            Ok(hmac::Key::from(okm))
        };
        let fill = |info: &'static [u8]| -> Result<Zeroizing<[u8; 32]>> {
            let mut key = Zeroizing::new([0u8; 32]);
            prk.expand(&[info], hkdf::HKDF_SHA256)
                .and_then(|okm| okm.fill(key.as_mut_slice()))
                .map_err(|_| Error::Crypto)?;
            Ok(key)
        };
        let signing_seed = fill(BUNDLE_SIGNING_INFO)?;
        let bundle_signing = ring::signature::Ed25519KeyPair::from_seed_unchecked(signing_seed.as_slice())
            .map_err(|_| Error::Crypto)?;
        Ok(Self {
            bundle_signing,
            wrapping: fill(KEY_WRAPPING_INFO)?,
            secrets: fill(SECRET_WRAPPING_INFO)?,
            backup: fill(BACKUP_INFO)?,
            legacy_audit: expand(AUDIT_MAC_INFO)?,
            check: expand(KEY_CHECK_INFO)?,
            records: expand(RECORD_MAC_INFO)?,
            root,
        })
    }

    /// The cipher that seals the vault's backups.
    pub(crate) fn backup_cipher(&self) -> Aes256Gcm {
        cipher(&self.backup)
    }

    /// The vault's bundle-signing public key (Ed25519).
    pub(crate) fn signing_public_key(&self) -> [u8; 32] {
        use ring::signature::KeyPair;
        let mut key = [0u8; 32];
        key.copy_from_slice(self.bundle_signing.public_key().as_ref());
        key
    }

    pub(crate) fn root(&self) -> &RootKey {
        &self.root
    }

    /// Seals one of the vault's own 32-byte secrets for storage, bound to the vault, to what it
    /// is (`label`) and to a number (`context`: an epoch, say), so that it cannot be swapped for
    /// another secret's sealed bytes.
    pub(crate) fn seal_secret(
        &self,
        vault_id: &[u8; 16],
        label: &str,
        context: u64,
        secret: &[u8; 32],
    ) -> Result<Vec<u8>> {
        seal_secret_with(
            &cipher(&self.secrets),
            &secret_aad(vault_id, label, context),
            secret,
        )
    }

    /// Opens what [`VaultKeys::seal_secret`] sealed; `None` if it was altered or moved.
    pub(crate) fn open_secret(
        &self,
        vault_id: &[u8; 16],
        label: &str,
        context: u64,
        sealed: &[u8],
    ) -> Option<Zeroizing<[u8; 32]>> {
        open_secret_with(
            &cipher(&self.secrets),
            &secret_aad(vault_id, label, context),
            sealed,
        )
    }

    /// The key check value stored in the vault: proves a key is the right one without revealing it.
    #[cfg(test)]
    pub(crate) fn key_check_value(&self) -> Vec<u8> {
        hmac::sign(&self.check, KEY_CHECK_MESSAGE).as_ref().to_vec()
    }

    /// Compares, in constant time, against a stored key check value.
    pub(crate) fn matches_key_check_value(&self, stored: &[u8]) -> bool {
        hmac::verify(&self.check, KEY_CHECK_MESSAGE, stored).is_ok()
    }

    /// A MAC over plaintext records an attacker with the file must not be able to edit unnoticed
    /// (settings such as the match threshold, principals' roles and password hashes). Each field is
    /// length-prefixed and `label` separates the kinds of record.
    pub(crate) fn record_mac(&self, label: &str, fields: &[&[u8]]) -> Vec<u8> {
        self.record_mac_array(label, fields).to_vec()
    }

    /// [`VaultKeys::record_mac`] as an array, for callers that combine many of them (the state
    /// digest, over every row).
    pub(crate) fn record_mac_array(&self, label: &str, fields: &[&[u8]]) -> [u8; 32] {
        let tag = hmac::sign(&self.records, &record_mac_input(label, fields));
        let mut mac = [0u8; 32];
        mac.copy_from_slice(tag.as_ref());
        mac
    }

    /// Checks, in constant time, a MAC made by [`VaultKeys::record_mac`].
    pub(crate) fn record_mac_matches(&self, label: &str, fields: &[&[u8]], mac: &[u8]) -> bool {
        hmac::verify(&self.records, &record_mac_input(label, fields), mac).is_ok()
    }

    /// Format version 1's audit key, for checking a version-1 chain before it is migrated.
    pub(crate) fn legacy_audit_key(&self) -> &hmac::Key {
        &self.legacy_audit
    }

    fn wrapping_cipher(&self) -> Aes256Gcm {
        cipher(&self.wrapping)
    }

    /// Wraps a data key under the key-wrapping key (derived from the master key), bound to its
    /// vault and subject.
    pub(crate) fn wrap(&self, vault_id: &[u8; 16], subject: &[u8; 16], key: &DataKey) -> Result<Vec<u8>> {
        let aad = wrap_aad(vault_id, subject);
        let nonce: [u8; NONCE_LEN] = random_array()?;
        let mut buffer = Vec::with_capacity(WRAPPED_KEY_LEN);
        buffer.extend_from_slice(&nonce);
        buffer.extend_from_slice(key.0.as_slice());
        let tag = seal_in_place(&self.wrapping_cipher(), &nonce, &aad, &mut buffer[NONCE_LEN..])?;
        buffer.extend_from_slice(&tag);
        Ok(buffer)
    }

    /// Unwraps a data key. `None` when the wrapped key was altered or belongs elsewhere.
    pub(crate) fn unwrap(&self, vault_id: &[u8; 16], subject: &[u8; 16], wrapped: &[u8]) -> Option<DataKey> {
        self.unwrapper().unwrap(vault_id, subject, wrapped)
    }

    /// The key-wrapping cipher set up once, for unwrapping many data keys (at open).
    pub(crate) fn unwrapper(&self) -> Unwrapper {
        Unwrapper(self.wrapping_cipher())
    }
}

impl crate::bundle::BundleSigner for VaultKeys {
    fn public_key(&self) -> [u8; 32] {
        self.signing_public_key()
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64]> {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.bundle_signing.sign(message).as_ref());
        Ok(signature)
    }
}

/// Unwraps data keys with one key-wrapping cipher; the cipher's key schedule is zeroed on drop.
pub(crate) struct Unwrapper(Aes256Gcm);

impl Unwrapper {
    /// As [`VaultKeys::unwrap`].
    pub(crate) fn unwrap(&self, vault_id: &[u8; 16], subject: &[u8; 16], wrapped: &[u8]) -> Option<DataKey> {
        if wrapped.len() != WRAPPED_KEY_LEN {
            return None;
        }
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(DATA_KEY_LEN);
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        key.copy_from_slice(ciphertext);
        open_in_place(
            &self.0,
            nonce,
            &wrap_aad(vault_id, subject),
            key.as_mut_slice(),
            tag,
        )?;
        Some(DataKey(key))
    }
}

/// Where a template ciphertext belongs; all of it goes into the associated data.
pub(crate) struct TemplateBinding<'a> {
    pub vault_id: &'a [u8; 16],
    pub subject: &'a [u8; 16],
    pub template_id: i64,
    pub model: &'a str,
    pub dim: usize,
}

impl TemplateBinding<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(TEMPLATE_AAD_LABEL.len() + 48 + self.model.len());
        aad.extend_from_slice(TEMPLATE_AAD_LABEL);
        aad.extend_from_slice(self.vault_id);
        aad.extend_from_slice(self.subject);
        aad.extend_from_slice(&self.template_id.to_le_bytes());
        aad.extend_from_slice(&(self.dim as u32).to_le_bytes());
        aad.extend_from_slice(&(self.model.len() as u32).to_le_bytes());
        aad.extend_from_slice(self.model.as_bytes());
        aad
    }
}

/// A sealed template: nonce and ciphertext-with-tag, stored in separate columns.
pub(crate) struct SealedTemplate {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// Seals a normalised template (its f32 values, little-endian) under a subject's data key.
pub(crate) fn seal_template(
    key: &DataKey,
    binding: &TemplateBinding<'_>,
    values: &[f32],
) -> Result<SealedTemplate> {
    let nonce: [u8; NONCE_LEN] = random_array()?;
    // Sized up front so the buffer never reallocates and leaves plaintext copies behind; the
    // encryption then turns it into ciphertext in place.
    let mut buffer = Vec::with_capacity(values.len() * 4 + TAG_LEN);
    for value in values {
        buffer.extend_from_slice(&value.to_le_bytes());
    }
    let tag = seal_in_place(&key.cipher(), &nonce, &binding.aad(), &mut buffer)?;
    buffer.extend_from_slice(&tag);
    Ok(SealedTemplate {
        nonce,
        ciphertext: buffer,
    })
}

/// Opens a sealed template into `out` (exactly `binding.dim` values). `None` when the ciphertext
/// was altered or belongs elsewhere.
pub(crate) fn open_template(
    key: &DataKey,
    binding: &TemplateBinding<'_>,
    nonce: &[u8],
    ciphertext: &[u8],
    out: &mut [f32],
) -> Option<()> {
    let mut scratch = WipedVec::default();
    let plain = open_template_in(key, binding, nonce, ciphertext, &mut scratch)?;
    if out.len() != binding.dim {
        return None;
    }
    for (value, plain) in out.iter_mut().zip(crate::template::le_f32s(plain)) {
        *value = plain;
    }
    Some(())
}

/// Opens a sealed template into `scratch`, decrypting straight from `ciphertext` (SQLite's
/// buffer, at open), and returns its plaintext: `binding.dim` little-endian f32. One buffer
/// serves every template a caller opens; it is left holding the last plaintext until dropped.
/// `None` when the ciphertext was altered or belongs elsewhere.
pub(crate) fn open_template_in<'s>(
    key: &DataKey,
    binding: &TemplateBinding<'_>,
    nonce: &[u8],
    ciphertext: &[u8],
    scratch: &'s mut WipedVec<u8>,
) -> Option<&'s [u8]> {
    let plain_len = binding.dim * 4;
    if nonce.len() != NONCE_LEN || ciphertext.len() != plain_len + TAG_LEN {
        return None;
    }
    let (body, tag) = ciphertext.split_at(plain_len);
    if scratch.capacity() < plain_len {
        // A fresh buffer of the right size rather than one grown by doubling.
        scratch.reset_with_capacity(plain_len);
    }
    scratch.resize(plain_len, 0);
    let out = &mut scratch[..plain_len];
    let buffer = aead::inout::InOutBuf::new(body, &mut *out).ok()?;
    open_inout(&key.cipher(), nonce, &binding.aad(), buffer, tag)?;
    Some(out)
}

/// Where a sealed piece of personal data (birth date, consent evidence) belongs.
pub(crate) struct PersonalBinding<'a> {
    pub vault_id: &'a [u8; 16],
    pub subject: &'a [u8; 16],
    /// `b"subject"` or `b"consent"`.
    pub table: &'static [u8],
    /// The row: 0 for the subject itself, the consent's ID otherwise.
    pub row: i64,
}

impl PersonalBinding<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(PERSONAL_AAD_LABEL.len() + 48);
        aad.extend_from_slice(PERSONAL_AAD_LABEL);
        aad.extend_from_slice(self.vault_id);
        aad.extend_from_slice(self.subject);
        aad.extend_from_slice(&(self.table.len() as u32).to_le_bytes());
        aad.extend_from_slice(self.table);
        aad.extend_from_slice(&self.row.to_le_bytes());
        aad
    }
}

/// Seals personal data under the subject's data key: nonce ‖ ciphertext ‖ tag. Erasing the data
/// key erases these with the templates.
pub(crate) fn seal_personal(
    key: &DataKey,
    binding: &PersonalBinding<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = random_array()?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plaintext);
    let tag = seal_in_place(&key.cipher(), &nonce, &binding.aad(), &mut sealed[NONCE_LEN..])?;
    sealed.extend_from_slice(&tag);
    Ok(sealed)
}

/// Opens what [`seal_personal`] sealed; `None` if it was altered or belongs elsewhere.
pub(crate) fn open_personal(
    key: &DataKey,
    binding: &PersonalBinding<'_>,
    sealed: &[u8],
) -> Option<WipedVec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plain = WipedVec::new(body.to_vec());
    open_in_place(&key.cipher(), nonce, &binding.aad(), &mut plain, tag)?;
    Some(plain)
}

fn record_mac_input(label: &str, fields: &[&[u8]]) -> Vec<u8> {
    // Sized once: opening a 1M vault builds two million of these, and growing each by doubling
    // cost more than its MAC.
    let length = label.len() + fields.iter().map(|field| field.len()).sum::<usize>();
    let mut input = Vec::with_capacity(length + 8 * (fields.len() + 1));
    for field in std::iter::once(label.as_bytes()).chain(fields.iter().copied()) {
        input.extend_from_slice(&(field.len() as u64).to_le_bytes());
        input.extend_from_slice(field);
    }
    input
}

fn secret_aad(vault_id: &[u8; 16], label: &str, context: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SECRET_AAD_LABEL.len() + 40 + label.len());
    aad.extend_from_slice(SECRET_AAD_LABEL);
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&(label.len() as u64).to_le_bytes());
    aad.extend_from_slice(label.as_bytes());
    aad.extend_from_slice(&context.to_le_bytes());
    aad
}

fn wrap_aad(vault_id: &[u8; 16], subject: &[u8; 16]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_AAD_LABEL.len() + 32);
    aad.extend_from_slice(WRAP_AAD_LABEL);
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(subject);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(byte: u8) -> VaultKeys {
        VaultKeys::derive_v1(MasterKey::from_bytes([byte; 32]), &[9; 16]).unwrap()
    }

    #[test]
    fn the_root_key_opens_only_with_its_master_key_and_vault() {
        let master = MasterKey::from_bytes([1; 32]);
        let root = RootKey::random().unwrap();
        let wrapped = root.wrap(&master, &[9; 16]).unwrap();
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        let opened = RootKey::unwrap(&master, &[9; 16], &wrapped).unwrap().unwrap();
        assert_eq!(opened.0.as_slice(), root.0.as_slice());
        assert!(
            RootKey::unwrap(&MasterKey::from_bytes([2; 32]), &[9; 16], &wrapped)
                .unwrap()
                .is_none()
        );
        assert!(RootKey::unwrap(&master, &[8; 16], &wrapped).unwrap().is_none());
        let mut flipped = wrapped.clone();
        flipped[20] ^= 1;
        assert!(RootKey::unwrap(&master, &[9; 16], &flipped).unwrap().is_none());
    }

    #[test]
    fn a_sealed_secret_is_bound_to_its_label_and_context() {
        let keys = keys(1);
        let sealed = keys
            .seal_secret(&[9; 16], "audit epoch key", 3, &[5; 32])
            .unwrap();
        assert_eq!(
            *keys.open_secret(&[9; 16], "audit epoch key", 3, &sealed).unwrap(),
            [5; 32]
        );
        assert!(keys
            .open_secret(&[9; 16], "audit epoch key", 2, &sealed)
            .is_none());
        assert!(keys.open_secret(&[9; 16], "other", 3, &sealed).is_none());
        assert!(keys
            .open_secret(&[8; 16], "audit epoch key", 3, &sealed)
            .is_none());
    }

    fn binding<'a>(subject: &'a [u8; 16], template_id: i64, dim: usize) -> TemplateBinding<'a> {
        TemplateBinding {
            vault_id: &[9; 16],
            subject,
            template_id,
            model: "m",
            dim,
        }
    }

    #[test]
    fn key_check_value_tells_keys_apart() {
        let stored = keys(1).key_check_value();
        assert!(keys(1).matches_key_check_value(&stored));
        assert!(!keys(2).matches_key_check_value(&stored));
    }

    #[test]
    fn record_mac_covers_label_and_every_field() {
        let keys = keys(1);
        let mac = keys.record_mac("settings", &[b"ab", b"c"]);
        assert!(keys.record_mac_matches("settings", &[b"ab", b"c"], &mac));
        assert!(!keys.record_mac_matches("settings", &[b"a", b"bc"], &mac));
        assert!(!keys.record_mac_matches("principal", &[b"ab", b"c"], &mac));
        assert!(!self::keys(2).record_mac_matches("settings", &[b"ab", b"c"], &mac));
    }

    #[test]
    fn wrapped_key_is_bound_to_vault_and_subject() {
        let keys = keys(1);
        let dek = DataKey::random().unwrap();
        let wrapped = keys.wrap(&[9; 16], &[1; 16], &dek).unwrap();
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        assert!(keys.unwrap(&[9; 16], &[1; 16], &wrapped).is_some());
        assert!(keys.unwrap(&[9; 16], &[2; 16], &wrapped).is_none());
        assert!(keys.unwrap(&[8; 16], &[1; 16], &wrapped).is_none());
        assert!(self::keys(2).unwrap(&[9; 16], &[1; 16], &wrapped).is_none());
    }

    #[test]
    fn template_ciphertext_is_bound_to_its_place() {
        let dek = DataKey::random().unwrap();
        let values = [0.6f32, 0.8];
        let sealed = seal_template(&dek, &binding(&[1; 16], 7, 2), &values).unwrap();
        let mut out = [0f32; 2];
        assert!(open_template(
            &dek,
            &binding(&[1; 16], 7, 2),
            &sealed.nonce,
            &sealed.ciphertext,
            &mut out
        )
        .is_some());
        assert_eq!(out, values);
        for wrong in [binding(&[2; 16], 7, 2), binding(&[1; 16], 8, 2)] {
            assert!(open_template(&dek, &wrong, &sealed.nonce, &sealed.ciphertext, &mut out).is_none());
        }
        let other_model = TemplateBinding {
            model: "n",
            ..binding(&[1; 16], 7, 2)
        };
        assert!(open_template(&dek, &other_model, &sealed.nonce, &sealed.ciphertext, &mut out).is_none());
    }

    proptest! {
        #[test]
        fn seal_open_round_trips_and_any_flip_fails(values in prop::collection::vec(-1.0f32..1.0, 1..64), flip in any::<prop::sample::Index>()) {
            let dek = DataKey::random().unwrap();
            let subject = [3u8; 16];
            let bind = binding(&subject, 1, values.len());
            let sealed = seal_template(&dek, &bind, &values).unwrap();
            let mut out = vec![0f32; values.len()];
            prop_assert!(open_template(&dek, &bind, &sealed.nonce, &sealed.ciphertext, &mut out).is_some());
            prop_assert_eq!(&out, &values);
            let mut tampered = sealed.ciphertext.clone();
            let at = flip.index(tampered.len());
            tampered[at] ^= 0x01;
            prop_assert!(open_template(&dek, &bind, &sealed.nonce, &tampered, &mut out).is_none());
        }
    }
}
