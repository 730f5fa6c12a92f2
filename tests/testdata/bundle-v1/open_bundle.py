#!/usr/bin/env python3
"""Opens a facevault export bundle, format version 1 or 2, and prints what it holds as JSON.
A version-2 bundle's Ed25519 signature is checked before anything is decrypted, and the signing
key is printed as "signed_by" (null for version 1).

    open_bundle.py BUNDLE SECRET_HEX_FILE

BUNDLE is the bundle file (`facevault export --out`). SECRET_HEX_FILE holds the recipient's
32-byte X25519 secret key as 64 hexadecimal digits (as `recipient-secret.hex` beside this script
does; a key file written by `facevault keygen-recipient` holds the 32 raw bytes instead: convert it
with `xxd -p -c 32 FILE`).

This is an independent implementation of the "Export bundle" section of docs/format.md. It does not
call facevault. It needs Python 3.8+ and the `cryptography` package, nothing else:

    python3 -m venv /tmp/bvenv && /tmp/bvenv/bin/pip install cryptography
    /tmp/bvenv/bin/python open_bundle.py bundle.fvb recipient-secret.hex

It exits 0 and prints the contents on stdout, or exits 1 with one line on stderr saying why the
bundle was refused.
"""
import base64
import binascii
import json
import math
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAGIC = b"FVBUNDLE"              # offset 0, 8 bytes
HEADER_LEN_V1 = 8 + 1 + 32 + 12  # magic, version, ephemeral public key, nonce: 53 bytes
HEADER_LEN_V2 = HEADER_LEN_V1 + 32 + 8  # then the vault's Ed25519 key and the creation time: 93
TAG_LEN = 16
SIGNATURE_LEN = 64
SIGNATURE_LABEL = b"facevault v2 bundle signature"
KDF_INFO = b"facevault v1 bundle key"


class Rejected(Exception):
    """The bundle cannot be opened, or what it holds is not a valid bundle."""


def bundle_key(shared, ephemeral_public, recipient_public):
    """HKDF-SHA256: salt = ephemeral public key ‖ recipient public key, IKM = the X25519 shared
    secret, info = "facevault v1 bundle key", 32 bytes of output."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral_public + recipient_public,
        info=KDF_INFO,
    ).derive(shared)


def decrypt(bundle, secret):
    """Checks the header (and a version-2 signature) and returns the decrypted plaintext (the
    contents' JSON, as bytes), the version, and the signer's key and signed time (version 2)."""
    if len(bundle) < len(MAGIC) + 1:
        raise Rejected("truncated" if MAGIC.startswith(bundle) else "not a facevault bundle")
    if bundle[:8] != MAGIC:
        raise Rejected("not a facevault bundle")
    version = bundle[8]
    if version not in (1, 2):
        raise Rejected(f"unsupported bundle version {version}")
    header_len, trailer_len = (HEADER_LEN_V1, 0) if version == 1 else (HEADER_LEN_V2, SIGNATURE_LEN)
    if len(bundle) < header_len + TAG_LEN + trailer_len:
        raise Rejected("truncated")
    sealed = bundle[:len(bundle) - trailer_len]
    signer, signed_at = None, None
    if version == 2:
        signer = sealed[53:85]
        signed_at = struct.unpack("<q", sealed[85:93])[0]
        try:
            Ed25519PublicKey.from_public_bytes(signer).verify(bundle[len(sealed):], SIGNATURE_LABEL + sealed)
        except (InvalidSignature, ValueError):
            raise Rejected("its signature does not verify: it was altered or forged") from None
    header = sealed[:header_len]
    ephemeral_public = header[9:41]
    nonce = header[41:53]
    ciphertext_and_tag = sealed[header_len:]

    own = X25519PrivateKey.from_private_bytes(secret)
    recipient_public = own.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = own.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError:
        # An all-zero shared secret: the ephemeral key is a low-order point.
        raise Rejected("decryption failed") from None
    key = bundle_key(shared, ephemeral_public, recipient_public)
    try:
        # The associated data is the whole header: 53 bytes in version 1, 93 in version 2.
        return AESGCM(key).decrypt(nonce, ciphertext_and_tag, header), version, signer, signed_at
    except InvalidTag:
        raise Rejected("decryption failed: wrong recipient key, or the bundle was altered") from None


def _expect(condition, what):
    if not condition:
        raise Rejected(f"malformed contents: {what}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hex(text, length):
    return isinstance(text, str) and len(text) == length and all(c in "0123456789abcdef" for c in text)


def _optional(obj, key):
    # Writers always write every key; an absent optional value reads as null.
    return obj.get(key)


def _exact_keys(obj, required, optional, where):
    _expect(isinstance(obj, dict), f"{where} is not an object")
    keys = set(obj)
    _expect(required <= keys, f"{where} lacks {sorted(required - keys)}")
    _expect(keys <= required | optional, f"{where} has unknown keys {sorted(keys - required - optional)}")


def check_contents(contents, version, signed_at):
    """The JSON inside, as docs/format.md specifies it."""
    _exact_keys(contents, {"format", "version", "vault_id", "created_at", "destination", "model",
                           "dim", "subjects"}, set(), "the bundle")
    _expect(contents["format"] == "facevault-bundle", "format")
    _expect(contents["version"] == version and _is_int(contents["version"]), "version")
    _expect(signed_at is None or contents["created_at"] == signed_at, "created_at differs from the signed time")
    _expect(_is_hex(contents["vault_id"], 32), "vault_id")
    _expect(_is_int(contents["created_at"]), "created_at")
    _expect(contents["destination"] in ("local", "network"), "destination")
    _expect(isinstance(contents["model"], str), "model")
    dim = contents["dim"]
    _expect(_is_int(dim) and 1 <= dim <= 4096, "dim")
    _expect(isinstance(contents["subjects"], list), "subjects")
    for subject in contents["subjects"]:
        _exact_keys(subject, {"subject", "enrolled_at", "expires_at", "minor", "consents",
                              "templates"}, set(), "a subject")
        _expect(_is_hex(subject["subject"], 32), "subject")
        _expect(_is_int(subject["enrolled_at"]) and _is_int(subject["expires_at"]), "times")
        _expect(isinstance(subject["minor"], bool), "minor")
        _expect(isinstance(subject["consents"], list), "consents")
        for consent in subject["consents"]:
            _exact_keys(consent, {"kind", "notice_version", "given_at", "by_guardian"},
                        {"withdrawn_at", "method", "guardian"}, "a consent")
            _expect(consent["kind"] in ("processing", "transfer"), "consent kind")
            _expect(isinstance(consent["notice_version"], str), "notice_version")
            _expect(_is_int(consent["given_at"]), "given_at")
            _expect(isinstance(consent["by_guardian"], bool), "by_guardian")
            withdrawn_at = _optional(consent, "withdrawn_at")
            _expect(withdrawn_at is None or _is_int(withdrawn_at), "withdrawn_at")
            method = _optional(consent, "method")
            _expect(method is None or isinstance(method, str), "method")
            guardian = _optional(consent, "guardian")
            if guardian is not None:
                _expect(isinstance(guardian, dict), "guardian")
                _expect(isinstance(guardian.get("name"), str)
                        and isinstance(guardian.get("relationship"), str), "guardian")
        _expect(isinstance(subject["templates"], list), "templates")
        for template in subject["templates"]:
            _expect(isinstance(template, str), "template")
            try:
                raw = base64.b64decode(template, validate=True)
            except binascii.Error:
                raise Rejected("malformed contents: a template is not base64") from None
            _expect(len(raw) == 4 * dim, "a template is not dim little-endian f32 values")
            values = struct.unpack(f"<{dim}f", raw)
            _expect(all(math.isfinite(v) for v in values), "a template value is not finite")
            # Stored L2-normalised: unit length up to f32 rounding.
            _expect(abs(math.sqrt(sum(v * v for v in values)) - 1.0) < 1e-3, "a template is not unit length")


def open_bundle(bundle, secret):
    plaintext, version, signer, signed_at = decrypt(bundle, secret)
    try:
        contents = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Rejected("malformed contents: not UTF-8 JSON") from None
    check_contents(contents, version, signed_at)
    contents["signed_by"] = signer.hex() if signer is not None else None
    return contents


def read_secret_hex(path):
    text = open(path, encoding="ascii").read().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise Rejected(f"{path}: not hexadecimal") from None
    if len(secret) != 32:
        raise Rejected(f"{path}: must hold 32 bytes (64 hex digits)")
    return secret


def main(argv):
    if len(argv) != 3:
        print("usage: open_bundle.py BUNDLE SECRET_HEX_FILE", file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            bundle = f.read()
        contents = open_bundle(bundle, read_secret_hex(argv[2]))
    except (Rejected, OSError) as e:
        print(f"bundle rejected: {e}", file=sys.stderr)
        return 1
    print(json.dumps(contents, indent=4, sort_keys=True, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
