"""Key files: the form this program writes is read without the library's serialization package,
and every other form is left to the library, which reads it or refuses it."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from protocol.identity import KeyFormatError, SigningKey, _pkcs8_seed


def test_the_written_form_reads_back_as_the_library_reads_it() -> None:
    for _ in range(50):
        key = SigningKey.generate()
        pem = key.to_pem()
        assert _pkcs8_seed(pem) is not None  # the fast path took it
        library = load_pem_private_key(pem, password=None)
        assert isinstance(library, Ed25519PrivateKey)
        assert SigningKey.from_pem(pem).public == key.public == SigningKey(library).public


def test_line_breaks_and_surrounding_space_do_not_matter() -> None:
    key = SigningKey.generate()
    body = key.to_pem().splitlines()[1]
    one_line = b"-----BEGIN PRIVATE KEY-----\n" + body + b"\n-----END PRIVATE KEY-----\n"
    wrapped = b"\n  -----BEGIN PRIVATE KEY-----\r\n" + body[:20] + b"\r\n" + body[20:]
    wrapped += b"\r\n-----END PRIVATE KEY-----  \n\n"
    for pem in (one_line, wrapped):
        assert SigningKey.from_pem(pem).public == key.public


def test_another_key_type_in_the_same_shape_goes_to_the_library_and_is_refused() -> None:
    """An X25519 key's PKCS #8 file has the Ed25519 file's length and layout; only the
    algorithm differs."""
    pem = X25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    assert _pkcs8_seed(pem) is None
    with pytest.raises(KeyFormatError, match="not an Ed25519 key"):
        SigningKey.from_pem(pem)


@pytest.mark.parametrize(
    "pem",
    [
        b"-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(b"\x30" * 48) + b"\n"
        b"-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        b"",
    ],
)
def test_damaged_files_are_refused_with_a_typed_error(pem: bytes) -> None:
    assert _pkcs8_seed(pem) is None
    with pytest.raises(KeyFormatError):
        SigningKey.from_pem(pem)


def test_an_encrypted_key_is_refused_with_a_typed_error() -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")
    )
    with pytest.raises(KeyFormatError, match="not a PEM private key"):
        SigningKey.from_pem(pem)
