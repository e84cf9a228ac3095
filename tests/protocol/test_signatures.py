"""Which signatures verify: RFC 8032's equation, and nothing that somebody other than the key's
holder could have made (small-order keys, a second S for the same signature)."""

from __future__ import annotations

import pytest

from protocol.errors import BadSignature
from protocol.events import _SIG_HEAD, ZERO_ID, Event, Post, _unsigned_encoding
from protocol.identity import DOMAIN_EVENT, DOMAIN_HELLO, SigningKey, verify

#: The order of Ed25519's prime-order group (RFC 8032, section 5.1).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
#: The base point B, encoded.
BASE_POINT = bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666")
#: The eight points of small order, encoded: a key made of one has no secret behind it.
SMALL_ORDER_KEYS = [
    bytes.fromhex(text)
    for text in (
        "0100000000000000000000000000000000000000000000000000000000000000",  # the identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    )
]
#: R = B and S = 1: [S]B = R + [k]A holds for every message when A is the identity.
FORGED = BASE_POINT + (1).to_bytes(32, "little")
NETWORK = bytes(range(32))


def test_a_signature_verifies_for_its_key_domain_and_message_only() -> None:
    key, other = SigningKey.for_label("alice"), SigningKey.for_label("bob")
    message = b"x" * 300
    sig = key.sign(DOMAIN_EVENT, message)
    assert verify(key.public, sig, DOMAIN_EVENT, message)
    assert not verify(other.public, sig, DOMAIN_EVENT, message)
    assert not verify(key.public, sig, DOMAIN_HELLO, message)
    assert not verify(key.public, sig, DOMAIN_EVENT, message + b"x")
    for index in (0, 31, 32, 63):
        flipped = bytearray(sig)
        flipped[index] ^= 1
        assert not verify(key.public, bytes(flipped), DOMAIN_EVENT, message)
    assert not verify(key.public[:31], sig, DOMAIN_EVENT, message)
    assert not verify(key.public, sig[:63], DOMAIN_EVENT, message)


@pytest.mark.parametrize("small_order_key", SMALL_ORDER_KEYS, ids=lambda key: key[:2].hex())
def test_a_small_order_key_verifies_nothing(small_order_key: bytes) -> None:
    """OpenSSL takes these keys; with the identity as key, R = B and S = 1 pass its check for
    every message, so anybody could speak for that node id or author."""
    for number in range(16):
        message = f"message {number}".encode()
        assert not verify(small_order_key, FORGED, DOMAIN_EVENT, message)


def test_a_second_s_for_the_same_signature_is_refused() -> None:
    """S + L satisfies the equation too; taking it would give one event two ids."""
    key = SigningKey.for_label("alice")
    message = b"an event"
    sig = key.sign(DOMAIN_EVENT, message)
    s = int.from_bytes(sig[32:], "little")
    malleated = sig[:32] + (s + GROUP_ORDER).to_bytes(32, "little")
    assert verify(key.public, sig, DOMAIN_EVENT, message)
    assert not verify(key.public, malleated, DOMAIN_EVENT, message)


def test_an_event_of_the_identity_key_is_refused_as_a_bad_signature() -> None:
    body = Post("social", 3, "anybody could have written this")
    unsigned = _unsigned_encoding(SMALL_ORDER_KEYS[0], 1, ZERO_ID, 1_000, body.KIND, body.to_cbor())
    raw = b"\x88" + unsigned[1:] + _SIG_HEAD + FORGED
    event = Event.decode(raw)
    with pytest.raises(BadSignature):
        event.check_signature(NETWORK)
