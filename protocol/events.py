"""Signed, hash-chained events: the only thing the mesh stores and gossips.

An event is ``[version, author, seq, prev, ts, kind, body, sig]`` in deterministic CBOR (see
``docs/protocol.md``). ``sig`` is the author's Ed25519 signature over a domain prefix, the network
id (the genesis event's id) and the same array without ``sig``; so an event of one mesh never
verifies in another. The event id is SHA-256 of the whole signed encoding.

Each author's events form a chain: ``seq`` counts up from 1 and ``prev`` is the id of the author's
event at ``seq - 1`` (32 zero bytes for seq 1). The genesis event is the one exception to the
network binding: it is signed over 32 zero bytes, since the network id is its own id.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import ClassVar, Self, TypeAlias

from protocol import codec
from protocol.codec import CborValue
from protocol.errors import BadSignature, DecodeError, MalformedEvent, TooLarge, UnknownKind
from protocol.identity import DOMAIN_EVENT, SigningKey, verify
from protocol.limits import (
    ID_BYTES,
    KEY_BYTES,
    MAX_AMOUNT,
    MAX_CHANNEL_BYTES,
    MAX_EVENT_BYTES,
    MAX_MEMO_BYTES,
    MAX_NAME_BYTES,
    MAX_POST_CONTENT_BYTES,
    MAX_PRIORITY,
    MIN_PRIORITY,
    SIGNATURE_BYTES,
)

EVENT_FORMAT_VERSION = 1
ZERO_ID = bytes(ID_BYTES)
#: The network id a genesis event is signed under (its own id is the network id of everything else).
GENESIS_NETWORK = ZERO_ID

_CHANNEL_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_SIG_HEAD = b"\x58\x40"  # CBOR head of a 64-byte string
_SIG_TAIL = len(_SIG_HEAD) + SIGNATURE_BYTES


def _text(body: dict[str, CborValue], key: str, max_bytes: int, *, allow_empty: bool = True) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(f"body field {key!r} must be text")
    if len(value.encode("utf-8")) > max_bytes:
        raise MalformedEvent(f"body field {key!r} is longer than {max_bytes} bytes")
    if not allow_empty and not value:
        raise MalformedEvent(f"body field {key!r} must not be empty")
    return value


def _uint(body: dict[str, CborValue], key: str, low: int, high: int) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedEvent(f"body field {key!r} must be an integer")
    if not low <= value <= high:
        raise MalformedEvent(f"body field {key!r} must be in {low}..{high}")
    return value


def _bytes(body: dict[str, CborValue], key: str, size: int) -> bytes:
    value = body.get(key)
    if not isinstance(value, bytes) or len(value) != size:
        raise MalformedEvent(f"body field {key!r} must be {size} bytes")
    return value


def _exact_keys(body: dict[str, CborValue], kind: str, keys: frozenset[str]) -> None:
    if body.keys() != keys:
        extra = sorted(body.keys() - keys)
        missing = sorted(keys - body.keys())
        raise MalformedEvent(f"{kind} body: unexpected fields {extra}, missing fields {missing}")


@dataclass(frozen=True, slots=True)
class Genesis:
    """Founds a mesh: names the pool (the author) and the distribution parameters."""

    KIND: ClassVar[str] = "genesis"
    _KEYS: ClassVar[frozenset[str]] = frozenset(
        {"name", "total", "weekly_flow", "housing_credit", "investment_pool", "period_s"}
    )
    #: The mesh's human-readable name.
    name: str
    #: Supply in minor units; all of it starts in the pool's balance.
    total: int
    #: Sent to every enrolled account once per period, in minor units.
    weekly_flow: int
    #: Sent once at enrolment, in minor units.
    housing_credit: int
    #: Sent once at enrolment, in minor units.
    investment_pool: int
    #: Length of a distribution period in seconds (a week in production).
    period_s: int

    def to_cbor(self) -> dict[str, CborValue]:
        return {
            "name": self.name,
            "total": self.total,
            "weekly_flow": self.weekly_flow,
            "housing_credit": self.housing_credit,
            "investment_pool": self.investment_pool,
            "period_s": self.period_s,
        }

    @classmethod
    def from_cbor(cls, body: dict[str, CborValue]) -> Self:
        _exact_keys(body, cls.KIND, cls._KEYS)
        return cls(
            name=_text(body, "name", MAX_NAME_BYTES),
            total=_uint(body, "total", 1, MAX_AMOUNT),
            weekly_flow=_uint(body, "weekly_flow", 0, MAX_AMOUNT),
            housing_credit=_uint(body, "housing_credit", 0, MAX_AMOUNT),
            investment_pool=_uint(body, "investment_pool", 0, MAX_AMOUNT),
            period_s=_uint(body, "period_s", 1, 10 * 365 * 86_400),
        )


@dataclass(frozen=True, slots=True)
class Enroll:
    """Opens an account: the first event of every account chain."""

    KIND: ClassVar[str] = "enroll"
    _KEYS: ClassVar[frozenset[str]] = frozenset({"name", "node"})
    #: Display name of the account holder (may be empty).
    name: str
    #: Node id of the node that holds the account's key (where claims are made).
    node: bytes

    def to_cbor(self) -> dict[str, CborValue]:
        return {"name": self.name, "node": self.node}

    @classmethod
    def from_cbor(cls, body: dict[str, CborValue]) -> Self:
        _exact_keys(body, cls.KIND, cls._KEYS)
        return cls(name=_text(body, "name", MAX_NAME_BYTES), node=_bytes(body, "node", KEY_BYTES))


SEND_PURPOSES = frozenset({"transfer", "housing", "investment", "weekly"})


@dataclass(frozen=True, slots=True)
class Send:
    """First half of a transfer: debits the author, to be claimed by ``to``."""

    KIND: ClassVar[str] = "send"
    _KEYS: ClassVar[frozenset[str]] = frozenset({"to", "amount", "purpose", "memo"})
    #: Recipient account id.
    to: bytes
    #: Minor units, at least 1.
    amount: int
    #: One of SEND_PURPOSES: a transfer, or a distribution from the pool.
    purpose: str
    #: Free text; the pool's automation records the period here ("period:42").
    memo: str

    def to_cbor(self) -> dict[str, CborValue]:
        return {"to": self.to, "amount": self.amount, "purpose": self.purpose, "memo": self.memo}

    @classmethod
    def from_cbor(cls, body: dict[str, CborValue]) -> Self:
        _exact_keys(body, cls.KIND, cls._KEYS)
        purpose = _text(body, "purpose", 16)
        if purpose not in SEND_PURPOSES:
            raise MalformedEvent(f"send purpose must be one of {sorted(SEND_PURPOSES)}")
        return cls(
            to=_bytes(body, "to", KEY_BYTES),
            amount=_uint(body, "amount", 1, MAX_AMOUNT),
            purpose=purpose,
            memo=_text(body, "memo", MAX_MEMO_BYTES),
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """Second half of a transfer: credits the author with a send addressed to it.

    It repeats the send's author, seq and amount so that a claim can be judged even where the send
    itself was never stored (a send of an author frozen by a fork)."""

    KIND: ClassVar[str] = "claim"
    _KEYS: ClassVar[frozenset[str]] = frozenset({"send", "sender", "send_seq", "amount"})
    #: Id of the send event.
    send: bytes
    #: Author of the send.
    sender: bytes
    #: Seq of the send in its author's chain.
    send_seq: int
    #: Amount of the send, in minor units.
    amount: int

    def to_cbor(self) -> dict[str, CborValue]:
        return {
            "send": self.send,
            "sender": self.sender,
            "send_seq": self.send_seq,
            "amount": self.amount,
        }

    @classmethod
    def from_cbor(cls, body: dict[str, CborValue]) -> Self:
        _exact_keys(body, cls.KIND, cls._KEYS)
        return cls(
            send=_bytes(body, "send", ID_BYTES),
            sender=_bytes(body, "sender", KEY_BYTES),
            send_seq=_uint(body, "send_seq", 1, (1 << 63) - 1),
            amount=_uint(body, "amount", 1, MAX_AMOUNT),
        )


@dataclass(frozen=True, slots=True)
class Post:
    """A broadcast message on a channel."""

    KIND: ClassVar[str] = "post"
    _KEYS: ClassVar[frozenset[str]] = frozenset({"channel", "priority", "content"})
    #: billboard, social, media, direct, or a custom name ([a-z0-9][a-z0-9_-]*, up to 32 bytes).
    channel: str
    #: 1 (lowest) to 5 (highest); higher goes first under back-pressure.
    priority: int
    #: UTF-8 text, up to 4 KiB.
    content: str

    def to_cbor(self) -> dict[str, CborValue]:
        return {"channel": self.channel, "priority": self.priority, "content": self.content}

    @classmethod
    def from_cbor(cls, body: dict[str, CborValue]) -> Self:
        _exact_keys(body, cls.KIND, cls._KEYS)
        channel = _text(body, "channel", MAX_CHANNEL_BYTES, allow_empty=False)
        if not valid_channel(channel):
            raise MalformedEvent("channel names use lowercase letters, digits, '-' and '_'")
        return cls(
            channel=channel,
            priority=_uint(body, "priority", MIN_PRIORITY, MAX_PRIORITY),
            content=_text(body, "content", MAX_POST_CONTENT_BYTES, allow_empty=False),
        )


def valid_channel(name: str) -> bool:
    return (
        0 < len(name.encode("utf-8")) <= MAX_CHANNEL_BYTES and _CHANNEL_RE.match(name) is not None
    )


Body: TypeAlias = Genesis | Enroll | Send | Claim | Post

BODY_TYPES: dict[str, type[Genesis] | type[Enroll] | type[Send] | type[Claim] | type[Post]] = {
    cls.KIND: cls for cls in (Genesis, Enroll, Send, Claim, Post)
}


def _unsigned_encoding(
    author: bytes, seq: int, prev: bytes, ts: int, kind: str, body: dict[str, CborValue]
) -> bytes:
    return codec.encode([EVENT_FORMAT_VERSION, author, seq, prev, ts, kind, body])


@dataclass(frozen=True, slots=True, eq=False)
class Event:
    """One signed entry of an author's chain."""

    #: Author's public key (32 bytes).
    author: bytes
    #: Position in the author's chain, from 1.
    seq: int
    #: Id of the author's event at seq - 1; 32 zero bytes at seq 1.
    prev: bytes
    #: Author's clock when signing, in milliseconds since the Unix epoch.
    ts: int
    #: Typed body; its class names the kind.
    body: Body
    #: Ed25519 signature (64 bytes).
    sig: bytes
    #: The canonical signed encoding: what is stored, sent and hashed.
    raw: bytes
    #: SHA-256 of raw.
    id: bytes

    @property
    def kind(self) -> str:
        return self.body.KIND

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Event({self.kind} {self.author[:4].hex()}#{self.seq} id={self.id[:4].hex()})"

    @classmethod
    def create(
        cls,
        key: SigningKey,
        network_id: bytes,
        *,
        seq: int,
        prev: bytes,
        ts: int,
        body: Body,
    ) -> Event:
        """Sign a new event; the caller chose seq and prev from the author's head.

        Everything `decode` would refuse is refused here first (MalformedEvent), so this node
        never signs - and never stores or gossips - an event its peers must reject.
        """
        body_map = body.to_cbor()
        type(body).from_cbor(body_map)  # the schema check decode runs
        if not 1 <= seq < (1 << 63) or not 0 <= ts < (1 << 53) or len(prev) != ID_BYTES:
            raise MalformedEvent("seq, ts or prev out of range")
        if (seq == 1) != (prev == ZERO_ID):
            raise MalformedEvent("prev is all zeros exactly when seq is 1")
        unsigned = _unsigned_encoding(key.public, seq, prev, ts, body.KIND, body_map)
        signing_network = GENESIS_NETWORK if isinstance(body, Genesis) else network_id
        sig = key.sign(DOMAIN_EVENT, signing_network + unsigned)
        # The signed array is the unsigned one with one more item: swap the head, append sig.
        raw = b"\x88" + unsigned[1:] + _SIG_HEAD + sig
        if len(raw) > MAX_EVENT_BYTES:
            raise TooLarge(f"event of {len(raw)} bytes exceeds {MAX_EVENT_BYTES}")
        return cls(key.public, seq, prev, ts, body, sig, raw, hashlib.sha256(raw).digest())

    @classmethod
    def decode(cls, raw: bytes) -> Event:
        """Parse and check the structure of an encoded event (not its signature or chain).

        Raises DecodeError for bytes that are not a canonical event, MalformedEvent or
        UnknownKind for a well-formed event whose fields break the schema.
        """
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise DecodeError("an event is binary")
        if len(raw) > MAX_EVENT_BYTES:
            raise TooLarge(f"event of {len(raw)} bytes exceeds {MAX_EVENT_BYTES}")
        raw = bytes(raw)
        value = codec.decode(raw)
        if not isinstance(value, list) or len(value) != 8:
            raise DecodeError("an event is an array of 8 items")
        version, author, seq, prev, ts, kind, body_map, sig = value
        # `True == 1` in Python: without the bool check, 0xf5 would be a second encoding.
        if isinstance(version, bool) or version != EVENT_FORMAT_VERSION:
            raise DecodeError(f"unknown event format version {version!r}")
        if not isinstance(author, bytes) or len(author) != KEY_BYTES:
            raise DecodeError("event author must be a 32-byte key")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < (1 << 63):
            raise DecodeError("event seq must be a positive integer")
        if not isinstance(prev, bytes) or len(prev) != ID_BYTES:
            raise DecodeError("event prev must be a 32-byte id")
        if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts < (1 << 53):
            raise DecodeError("event ts must be a non-negative integer of milliseconds")
        if not isinstance(kind, str):
            raise DecodeError("event kind must be text")
        if not isinstance(body_map, dict):
            raise DecodeError("event body must be a map")
        if not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
            raise DecodeError("event sig must be 64 bytes")
        if (seq == 1) != (prev == ZERO_ID):
            raise MalformedEvent("prev is all zeros exactly when seq is 1")
        body_type = BODY_TYPES.get(kind)
        if body_type is None:
            raise UnknownKind(f"unknown event kind {kind!r}")
        body = body_type.from_cbor(body_map)
        return cls(author, seq, prev, ts, body, sig, raw, hashlib.sha256(raw).digest())

    def signed_part(self) -> bytes:
        """The encoding without the signature: a 7-item array instead of the 8-item one."""
        # The signed encoding is the 7-item array's items plus the sig, under an 8-item head.
        return b"\x87" + self.raw[1:-_SIG_TAIL]

    def check_signature(self, network_id: bytes) -> None:
        """Raise BadSignature unless the author signed this event for ``network_id``."""
        signing_network = GENESIS_NETWORK if isinstance(self.body, Genesis) else network_id
        if not verify(self.author, self.sig, DOMAIN_EVENT, signing_network + self.signed_part()):
            raise BadSignature(f"signature of {self!r} does not verify")
