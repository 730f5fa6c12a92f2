//! Export bundles: face data sealed to one recipient's X25519 public key, for the few transfers the
//! law allows (Art. 8). A fresh ephemeral key pair per bundle, X25519 key agreement, HKDF-SHA256
//! and AES-256-GCM; the device master key and wrapped keys never go in. The byte layout is in
//! `docs/format.md`.

use std::path::{Path, PathBuf};

use ring::hkdf;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::clock::UnixMillis;
use crate::crypto::{self, NONCE_LEN, TAG_LEN};
use crate::error::{BundleProblem, Error, Result};
use crate::keys;
use crate::policy::Guardian;

/// The first bytes of every bundle.
pub const BUNDLE_MAGIC: &[u8; 8] = b"FVBUNDLE";
/// The bundle format this build writes: version 2, signed by the exporting vault. Version 1
/// (unsigned) still opens.
pub const BUNDLE_VERSION: u8 = 2;
const HEADER_LEN_V1: usize = BUNDLE_MAGIC.len() + 1 + 32 + NONCE_LEN;
/// Version 2's header adds the vault's Ed25519 public key and the creation time.
const HEADER_LEN: usize = HEADER_LEN_V1 + 32 + 8;
/// An Ed25519 signature.
const SIGNATURE_LEN: usize = 64;
const SIGNATURE_LABEL: &[u8] = b"facevault v2 bundle signature";
/// The largest bundle made or opened: 256 MiB, about 90,000 subjects of one 512-value template.
/// A larger export is made in parts (name the subjects); a larger file is refused unread.
pub const MAX_BUNDLE_BYTES: usize = 256 << 20;
/// The largest plaintext that fits a bundle of [`MAX_BUNDLE_BYTES`].
pub(crate) const MAX_BUNDLE_PLAINTEXT: usize = MAX_BUNDLE_BYTES - HEADER_LEN - TAG_LEN - SIGNATURE_LEN;
const KDF_INFO: &[u8] = b"facevault v1 bundle key";

/// A recipient's X25519 public key: bundles are sealed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientPublicKey(pub [u8; 32]);

impl RecipientPublicKey {
    /// Reads a public key file: exactly 32 raw bytes.
    pub fn from_file(path: &Path) -> Result<Self> {
        Ok(Self(keys::read_public_file(path)?))
    }
}

/// A recipient's X25519 secret key: opens bundles sealed to its public key. Never printed.
pub struct RecipientSecretKey(Zeroizing<[u8; 32]>);

impl RecipientSecretKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        Ok(Self(Zeroizing::new(crypto::random_array()?)))
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key bytes.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a secret key file: exactly 32 raw bytes that only its owner may read.
    pub fn from_file(path: &Path) -> Result<Self> {
        Ok(Self(keys::read_secret_file(path)?))
    }

    /// Writes the secret key to `path` (mode 0600) and its public key to `path` + `.pub`; refuses
    /// to overwrite either. Returns the public key's path.
    pub fn write_pair(&self, path: &Path) -> Result<PathBuf> {
        let mut public_path = path.as_os_str().to_owned();
        public_path.push(".pub");
        let public_path = PathBuf::from(public_path);
        // Both files are made before either is written: a refusal of the second leaves no
        // secret behind in the first.
        let mut secret = keys::NewFile::create(path, 0o600)?;
        let mut public = keys::NewFile::create(&public_path, 0o644)?;
        secret.write_synced(self.0.as_slice())?;
        public.write_synced(&self.public_key().0)?;
        secret.place()?;
        public.place()?;
        secret.keep();
        public.keep();
        Ok(public_path)
    }

    /// The matching public key.
    pub fn public_key(&self) -> RecipientPublicKey {
        RecipientPublicKey(PublicKey::from(&StaticSecret::from(*self.0)).to_bytes())
    }
}

impl std::fmt::Debug for RecipientSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecipientSecretKey([REDACTED])")
    }
}

/// What a bundle holds, as JSON inside the encryption. Holds template values: never printed.
#[derive(Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BundleContents {
    /// Always `facevault-bundle`.
    pub format: String,
    /// Always 1.
    pub version: u8,
    /// The exporting vault's ID, hex.
    pub vault_id: String,
    /// When the bundle was made.
    pub created_at: UnixMillis,
    /// `local` or `network`.
    pub destination: String,
    /// The face model of the templates.
    pub model: String,
    /// Values per template.
    pub dim: usize,
    /// The exported subjects.
    pub subjects: Vec<BundleSubject>,
}

/// One exported subject with the evidence of its consents.
#[derive(Serialize, Deserialize, PartialEq, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct BundleSubject {
    /// Its opaque ID.
    #[zeroize(skip)]
    pub subject: String,
    /// When it was enrolled.
    #[zeroize(skip)]
    pub enrolled_at: UnixMillis,
    /// When its retention ends.
    #[zeroize(skip)]
    pub expires_at: UnixMillis,
    /// Enrolled under 14.
    #[zeroize(skip)]
    pub minor: bool,
    /// Its consents, oldest first.
    #[zeroize(skip)]
    pub consents: Vec<ConsentEvidence>,
    /// Its templates: base64 of the L2-normalised little-endian f32 values.
    pub templates: Vec<String>,
}

/// A consent as recorded: what must outlive withdrawal, and the encrypted evidence while the
/// subject is enrolled. Its `Debug` output leaves out the evidence (method, guardian).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsentEvidence {
    /// `processing` or `transfer`.
    pub kind: String,
    /// The notice version it was given under.
    pub notice_version: String,
    /// When it was given.
    pub given_at: UnixMillis,
    /// Whether a parent or guardian gave it.
    pub by_guardian: bool,
    /// When it was withdrawn, if it was.
    pub withdrawn_at: Option<UnixMillis>,
    /// How it was obtained.
    pub method: Option<String>,
    /// The guardian who gave it, for a child.
    pub guardian: Option<Guardian>,
}

impl std::fmt::Debug for ConsentEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentEvidence")
            .field("kind", &self.kind)
            .field("notice_version", &self.notice_version)
            .field("given_at", &self.given_at)
            .field("by_guardian", &self.by_guardian)
            .field("withdrawn_at", &self.withdrawn_at)
            .finish_non_exhaustive()
    }
}

/// Who made a bundle and when, as its signature proves (version 2), or nothing (version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleOrigin {
    /// The exporting vault's Ed25519 public key (`stats` shows it as `signing_key`); `None` for
    /// an unsigned version-1 bundle.
    pub vault_key: Option<[u8; 32]>,
    /// When it was made, in milliseconds since the Unix epoch, as signed; `None` for version 1.
    pub created_at: Option<UnixMillis>,
}

/// What [`open_checked`] requires of a bundle besides decrypting.
#[derive(Debug, Clone, Copy, Default)]
pub struct BundleExpectations {
    /// The vault it must come from (its `signing_key`): an unsigned bundle, or one signed by
    /// another vault, is refused.
    pub vault_key: Option<[u8; 32]>,
    /// The newest it may be stale: `(now, max_age_ms)`; a bundle made earlier, or later than
    /// `now` (a clock off by more than a minute), is refused.
    pub fresh_at: Option<(UnixMillis, i64)>,
}

/// A vault's bundle-signing key: Ed25519, derived from its root key.
pub(crate) trait BundleSigner {
    fn public_key(&self) -> [u8; 32];
    fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN]>;
}

/// Seals `plaintext` to `recipient` and signs the whole as the vault `signer`, made at `created_at`.
pub(crate) fn seal(
    recipient: &RecipientPublicKey,
    plaintext: &[u8],
    signer: &dyn BundleSigner,
    created_at: UnixMillis,
) -> Result<Vec<u8>> {
    // StaticSecret zeroizes itself on drop; the array copy it was made from is zeroized here.
    let seed = Zeroizing::new(crypto::random_array::<32>()?);
    let ephemeral = StaticSecret::from(*seed);
    let ephemeral_public = PublicKey::from(&ephemeral);
    // X25519 ignores the top bit of a public key (RFC 7748); clear it so that the bytes bound into
    // the key derivation are the ones the recipient recomputes from its secret key.
    let mut recipient_public = recipient.0;
    recipient_public[31] &= 0x7f;
    let shared = ephemeral.diffie_hellman(&PublicKey::from(recipient_public));
    if !shared.was_contributory() {
        return Err(Error::InvalidArgument {
            what: "recipient key",
            reason: "is a low-order point, not a usable X25519 public key".into(),
        });
    }
    let key = derive_key(shared.as_bytes(), ephemeral_public.as_bytes(), &recipient_public)?;
    let nonce: [u8; NONCE_LEN] = crypto::random_array()?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN + SIGNATURE_LEN);
    out.extend_from_slice(BUNDLE_MAGIC);
    out.push(BUNDLE_VERSION);
    out.extend_from_slice(ephemeral_public.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&signer.public_key());
    out.extend_from_slice(&created_at.to_le_bytes());
    out.extend_from_slice(plaintext);
    let (header, body) = out.split_at_mut(HEADER_LEN);
    let tag = crypto::seal_in_place(&crypto::cipher(&key), &nonce, header, body)?;
    out.extend_from_slice(&tag);
    let signature = signer.sign(&[SIGNATURE_LABEL, &out].concat())?;
    out.extend_from_slice(&signature);
    Ok(out)
}

/// Opens a bundle with the recipient's secret key and parses its contents. A version-2 bundle's
/// signature is checked (an altered or forged one is refused); who signed it is not: see
/// [`open_checked`].
pub fn open(secret: &RecipientSecretKey, bundle: &[u8]) -> Result<BundleContents> {
    open_checked(secret, bundle, &BundleExpectations::default()).map(|(contents, _)| contents)
}

/// Opens a bundle and checks it against `expect`: signed by the expected vault, and fresh.
/// Returns its contents and its origin.
pub fn open_checked(
    secret: &RecipientSecretKey,
    bundle: &[u8],
    expect: &BundleExpectations,
) -> Result<(BundleContents, BundleOrigin)> {
    let rejected = |problem| Error::Bundle(problem);
    if bundle.len() < BUNDLE_MAGIC.len() + 1 {
        return Err(rejected(if BUNDLE_MAGIC.starts_with(bundle) {
            BundleProblem::Truncated
        } else {
            BundleProblem::NotABundle
        }));
    }
    if &bundle[..BUNDLE_MAGIC.len()] != BUNDLE_MAGIC {
        return Err(rejected(BundleProblem::NotABundle));
    }
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(rejected(BundleProblem::TooLarge));
    }
    let version = bundle[BUNDLE_MAGIC.len()];
    let (header_len, trailer_len) = match version {
        1 => (HEADER_LEN_V1, 0),
        2 => (HEADER_LEN, SIGNATURE_LEN),
        other => return Err(rejected(BundleProblem::UnsupportedVersion(other))),
    };
    if bundle.len() < header_len + TAG_LEN + trailer_len {
        return Err(rejected(BundleProblem::Truncated));
    }
    let (sealed, signature) = bundle.split_at(bundle.len() - trailer_len);
    let origin = if version == 2 {
        let vault_key: [u8; 32] = sealed[HEADER_LEN_V1..HEADER_LEN_V1 + 32]
            .try_into()
            .map_err(|_| rejected(BundleProblem::Truncated))?;
        let mut time = [0u8; 8];
        time.copy_from_slice(&sealed[HEADER_LEN_V1 + 32..HEADER_LEN]);
        // Checked before anything is decrypted: a forged or altered bundle is not opened.
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &vault_key)
            .verify(&[SIGNATURE_LABEL, sealed].concat(), signature)
            .map_err(|_| rejected(BundleProblem::BadSignature))?;
        BundleOrigin {
            vault_key: Some(vault_key),
            created_at: Some(i64::from_le_bytes(time)),
        }
    } else {
        BundleOrigin {
            vault_key: None,
            created_at: None,
        }
    };
    if let Some(expected) = expect.vault_key {
        match origin.vault_key {
            None => return Err(rejected(BundleProblem::Unsigned)),
            Some(found) if found != expected => return Err(rejected(BundleProblem::WrongSigner)),
            Some(_) => {}
        }
    }
    if let Some((now, max_age)) = expect.fresh_at {
        let created = origin.created_at.ok_or(rejected(BundleProblem::Unsigned))?;
        if created > now.saturating_add(60_000) || now.saturating_sub(created) > max_age {
            return Err(rejected(BundleProblem::Stale));
        }
    }
    let (header, rest) = sealed.split_at(header_len);
    let mut ephemeral_public = [0u8; 32];
    ephemeral_public.copy_from_slice(&header[BUNDLE_MAGIC.len() + 1..BUNDLE_MAGIC.len() + 33]);
    let nonce = &header[BUNDLE_MAGIC.len() + 33..HEADER_LEN_V1];
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let own = StaticSecret::from(*secret.0);
    let shared = own.diffie_hellman(&PublicKey::from(ephemeral_public));
    if !shared.was_contributory() {
        return Err(rejected(BundleProblem::DecryptionFailed));
    }
    let key = derive_key(
        shared.as_bytes(),
        &ephemeral_public,
        secret.public_key().0.as_ref(),
    )?;
    let mut plain = Zeroizing::new(body.to_vec());
    crypto::open_in_place(&crypto::cipher(&key), nonce, header, &mut plain, tag)
        .ok_or(rejected(BundleProblem::DecryptionFailed))?;
    let contents: BundleContents =
        serde_json::from_slice(&plain).map_err(|_| rejected(BundleProblem::Malformed))?;
    let consistent = contents.format == "facevault-bundle"
        && contents.version == version
        && origin
            .created_at
            .is_none_or(|signed| signed == contents.created_at);
    if !consistent {
        return Err(rejected(BundleProblem::Malformed));
    }
    Ok((contents, origin))
}

struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

fn derive_key(
    shared: &[u8; 32],
    ephemeral_public: &[u8; 32],
    recipient_public: &[u8],
) -> Result<Zeroizing<[u8; 32]>> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral_public);
    salt[32..].copy_from_slice(recipient_public);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(shared);
    let info = [KDF_INFO];
    let okm = prk.expand(&info, KeyLen).map_err(|_| Error::Crypto)?;
    let mut key = Zeroizing::new([0u8; 32]);
    okm.fill(key.as_mut_slice()).map_err(|_| Error::Crypto)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestSigner(ring::signature::Ed25519KeyPair);

    impl BundleSigner for TestSigner {
        fn public_key(&self) -> [u8; 32] {
            use ring::signature::KeyPair;
            self.0.public_key().as_ref().try_into().unwrap()
        }

        fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN]> {
            Ok(self.0.sign(message).as_ref().try_into().unwrap())
        }
    }

    fn signer(seed: u8) -> TestSigner {
        TestSigner(ring::signature::Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap())
    }

    fn seal(recipient: &RecipientPublicKey, plaintext: &[u8]) -> Result<Vec<u8>> {
        super::seal(recipient, plaintext, &signer(1), 1)
    }

    fn contents() -> BundleContents {
        BundleContents {
            format: "facevault-bundle".into(),
            version: 2,
            vault_id: "00".repeat(16),
            created_at: 1,
            destination: "network".into(),
            model: "m".into(),
            dim: 1,
            subjects: vec![],
        }
    }

    #[test]
    fn opens_only_with_the_recipients_key_and_detects_every_flip() {
        let secret = RecipientSecretKey::generate().unwrap();
        let plain = serde_json::to_vec(&contents()).unwrap();
        let bundle = seal(&secret.public_key(), &plain).unwrap();
        assert!(open(&secret, &bundle).unwrap() == contents());
        let other = RecipientSecretKey::generate().unwrap();
        assert!(matches!(
            open(&other, &bundle),
            Err(Error::Bundle(BundleProblem::DecryptionFailed))
        ));
        for at in (0..bundle.len()).step_by(7) {
            let mut flipped = bundle.clone();
            flipped[at] ^= 0x10;
            assert!(open(&secret, &flipped).is_err(), "flip at {at} accepted");
        }
        for len in [0, 5, 9, HEADER_LEN, bundle.len() - 1] {
            assert!(
                matches!(open(&secret, &bundle[..len]), Err(Error::Bundle(_))),
                "length {len}"
            );
        }
    }

    #[test]
    fn the_signer_and_the_age_are_checked_when_asked() {
        let secret = RecipientSecretKey::generate().unwrap();
        let plain = serde_json::to_vec(&contents()).unwrap();
        let bundle = seal(&secret.public_key(), &plain).unwrap();
        let expect = |vault_key, fresh_at| BundleExpectations { vault_key, fresh_at };
        let ours = signer(1).public_key();
        let (_, origin) = open_checked(&secret, &bundle, &expect(Some(ours), Some((1_000, 5_000)))).unwrap();
        assert_eq!(
            origin,
            BundleOrigin {
                vault_key: Some(ours),
                created_at: Some(1)
            }
        );
        let refused = |expected: BundleExpectations| match open_checked(&secret, &bundle, &expected) {
            Err(Error::Bundle(problem)) => problem,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("opened"),
        };
        assert_eq!(
            refused(expect(Some(signer(2).public_key()), None)),
            BundleProblem::WrongSigner
        );
        assert_eq!(refused(expect(None, Some((10_000, 5_000)))), BundleProblem::Stale);
        // Re-signed by another key: the header names that key, so it verifies, but is not ours.
        let mut resigned = bundle[..bundle.len() - SIGNATURE_LEN].to_vec();
        resigned[HEADER_LEN_V1..HEADER_LEN_V1 + 32].copy_from_slice(&signer(2).public_key());
        let signature = signer(2).sign(&[SIGNATURE_LABEL, &resigned].concat()).unwrap();
        resigned.extend_from_slice(&signature);
        assert!(matches!(
            open_checked(&secret, &resigned, &expect(Some(ours), None)),
            Err(Error::Bundle(BundleProblem::WrongSigner))
        ));
        // A time rewritten without re-signing breaks the signature.
        let mut retimed = bundle.clone();
        retimed[HEADER_LEN_V1 + 32] ^= 1;
        assert!(matches!(
            open_checked(&secret, &retimed, &BundleExpectations::default()),
            Err(Error::Bundle(BundleProblem::BadSignature))
        ));
    }

    #[test]
    fn a_low_order_recipient_key_is_refused() {
        assert!(seal(&RecipientPublicKey([0; 32]), b"{}").is_err());
    }
}
