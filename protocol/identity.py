"""Ed25519 identities: signing keys, public key ids and signature checks.

A node id (and an account id) is the 32-byte Ed25519 public key, written as 64 lowercase hex digits
wherever a human sees it. Every signature covers a domain prefix naming what is signed, so a
signature made for one purpose (an event, a HELLO, a signalling message) is never valid for another
(libp2p's signing prefix).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from functools import cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.limits import KEY_BYTES, SIGNATURE_BYTES

DOMAIN_EVENT = b"liberation-node/v1/event\x00"
DOMAIN_HELLO = b"liberation-node/v1/hello\x00"
DOMAIN_SIGNAL = b"liberation-node/v1/signal\x00"
DOMAIN_LINK_STATE = b"liberation-node/v1/link-state\x00"
DOMAIN_ROUTED = b"liberation-node/v1/routed\x00"


class KeyFormatError(ValueError):
    """A key or key id that is not in the expected form."""


def key_id(public_key: bytes) -> str:
    """The text form of a public key (node or account id)."""
    return public_key.hex()


def short_id(public_key: bytes) -> str:
    """A short prefix for logs; never used to identify anything."""
    return public_key[:4].hex()


def parse_key_id(text: str) -> bytes:
    """The public key written as ``text``; raises KeyFormatError when it is not one."""
    if not isinstance(text, str) or len(text) != KEY_BYTES * 2:
        raise KeyFormatError(f"expected {KEY_BYTES * 2} hex digits")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyFormatError(f"expected {KEY_BYTES * 2} hex digits") from None
    if raw.hex() != text:
        raise KeyFormatError("key ids are written in lowercase hex")
    return raw


class SigningKey:
    """An Ed25519 private key with its public half, as raw bytes."""

    __slots__ = ("_private", "public")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public: bytes = private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """A key from a 32-byte seed; used by tests and the simulator for reproducible keys."""
        if len(seed) != 32:
            raise KeyFormatError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def for_label(cls, label: str) -> SigningKey:
        """A deterministic key named by a label (tests, simulation, test vectors)."""
        return cls.from_seed(hashlib.sha256(label.encode("utf-8")).digest())

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        seed = _pkcs8_seed(data)
        if seed is not None:
            return cls.from_seed(seed)
        # Any other form (another tool's encoding, an encrypted key, a damaged file): the
        # library reads it or says what is wrong with it.
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            private = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFormatError(f"not a PEM private key: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyFormatError("the key is not an Ed25519 key")
        return cls(private)

    def to_pem(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        return self._private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def sign(self, domain: bytes, message: bytes) -> bytes:
        return self._private.sign(domain + message)

    @property
    def id(self) -> str:
        return key_id(self.public)

    def __repr__(self) -> str:
        # Never show key material, not even in a traceback.
        return f"SigningKey({short_id(self.public)}...)"


#: An unencrypted Ed25519 key in PKCS #8, as `SigningKey.to_pem` writes it (RFC 8410, section 7):
#: this DER prefix, then the 32-byte seed.
_PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN = b"-----BEGIN PRIVATE KEY-----"
_PEM_END = b"-----END PRIVATE KEY-----"


def _pkcs8_seed(data: bytes) -> bytes | None:
    """The seed of a key in exactly the form `SigningKey.to_pem` writes, None for anything else.

    Reading this one fixed form here spares every start-up the import of the library's
    serialization package: ~40 ms on a slow machine, most of it SSH key support."""
    text = data.strip()
    if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)):
        return None
    try:
        der = base64.b64decode(
            b"".join(text[len(_PEM_BEGIN) : -len(_PEM_END)].split()), validate=True
        )
    except ValueError:  # binascii.Error among them
        return None
    if len(der) != len(_PKCS8_ED25519_PREFIX) + 32 or not der.startswith(_PKCS8_ED25519_PREFIX):
        return None
    return der[len(_PKCS8_ED25519_PREFIX) :]


@cache
def _libsodium() -> tuple[Callable[[bytes, bytes], bytes], type[Exception]]:
    """libsodium's combined-mode check and its failure; imported at first use, as its bindings
    take ~40 ms to load (the node loads them beside the mesh modules, off the start-up path)."""
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    return crypto_sign_open, BadSignatureError


def load_verifier() -> None:
    """Load the signature checker now, where waiting is harmless, not at the first check."""
    _libsodium()


def verify(public_key: bytes, signature: bytes, domain: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s signature of ``domain + message``.

    libsodium checks it, not OpenSSL, for its stricter rules: besides the RFC 8032 equation
    (without the cofactor) it wants a canonical S, and a public key and R that are canonical and
    not of small order. OpenSSL takes a small-order key, and for one of those anybody can make a
    signature of any message (the identity point as key, R = B, S = 1): a node id or an author
    that anybody could speak for. libsodium is also about twice as fast, on the path every
    relayed event takes."""
    if len(public_key) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    sign_open, bad_signature = _libsodium()
    try:
        sign_open(bytes(signature) + domain + message, bytes(public_key))
    except bad_signature:
        return False
    return True
