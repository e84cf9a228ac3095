"""Versioned wire frames: one data-channel message is one frame.

A frame is the deterministic CBOR array ``[version, type, *fields]``. Each type is one frozen
dataclass with ``fields()`` and ``from_fields()``; `FRAME_TYPES` maps the type code to the class
(aiortc's chunk registry). `decode_frame` checks the size before parsing, then the version, the type
and the exact field count (an extra field is an error, not something to ignore), so that the receive
path raises only `RemoteProtocolError` subclasses.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Protocol, Self, TypeAlias

from protocol import codec
from protocol.codec import CborValue
from protocol.errors import (
    CloseReason,
    DecodeError,
    TooLarge,
    UnknownFrameType,
    UnknownVersion,
)
from protocol.identity import (
    DOMAIN_HELLO,
    DOMAIN_LINK_STATE,
    DOMAIN_ROUTED,
    DOMAIN_SIGNAL,
    SigningKey,
    verify,
)
from protocol.limits import (
    ID_BYTES,
    KEY_BYTES,
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_FRAME,
    MAX_FINGERPRINT_CHARS,
    MAX_FRAME_BYTES,
    MAX_HEADS_PER_FRAME,
    MAX_IDS_PER_FRAME,
    MAX_NAME_BYTES,
    MAX_RANGE_EVENTS,
    MAX_REASON_BYTES,
    MAX_ROUTED_PAYLOAD_BYTES,
    MAX_ROUTED_TTL,
    NONCE_BYTES,
    PROTOCOL_VERSION,
    SIGNATURE_BYTES,
)

#: Most neighbours one link-state record lists (max_peers is at most 256).
MAX_LINK_NEIGHBOURS = 256
#: Most records in one LINK_STATES frame.
MAX_LINK_STATES = 64
#: Most addresses in one PEERS frame.
MAX_PEER_ADDRESSES = 64
#: What a ROUTED frame's payload is.
ROUTED_KINDS = frozenset({"direct", "ack", "signal"})
#: What a SIGNAL of kind "refusal" carries in place of an SDP: the code of the refusal.
REFUSAL_CODE = re.compile(r"[a-z_]{1,32}")


class FrameType(IntEnum):
    HELLO = 1
    EVENTS = 2
    HAVE = 3
    WANT = 4
    HEADS = 5
    GET_RANGE = 6
    PING = 7
    PONG = 8
    ROUTED = 9
    SIGNAL = 10
    BYE = 11
    PRUNE = 12
    CREDIT = 13
    FORK = 14
    LINK_STATE = 15
    PEERS = 16
    ERROR = 17
    LINK_STATES = 18


# --- field readers: each raises DecodeError naming the field ------------------------------------


def _bytes(value: CborValue, name: str, size: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise DecodeError(f"{name} must be {size} bytes")
    return value


def _blob(value: CborValue, name: str, max_size: int) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError(f"{name} must be bytes")
    if len(value) > max_size:
        raise TooLarge(f"{name} is longer than {max_size} bytes")
    return value


def _uint(value: CborValue, name: str, high: int = (1 << 63) - 1, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise DecodeError(f"{name} must be an integer in {low}..{high}")
    return value


def _bool(value: CborValue, name: str) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"{name} must be true or false")
    return value


def _text(value: CborValue, name: str, max_bytes: int) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{name} must be text")
    if len(value) > max_bytes or len(value.encode("utf-8")) > max_bytes:
        raise TooLarge(f"{name} is longer than {max_bytes} bytes")
    return value


def _list(value: CborValue, name: str, max_items: int) -> list[CborValue]:
    if not isinstance(value, list):
        raise DecodeError(f"{name} must be an array")
    if len(value) > max_items:
        raise TooLarge(f"{name} has more than {max_items} items")
    return value


def _routed_kind(value: CborValue) -> str:
    kind = _text(value, "routed.kind", 16)
    if kind not in ROUTED_KINDS:
        raise DecodeError(f"routed.kind must be one of {sorted(ROUTED_KINDS)}")
    return kind


def _ids(value: CborValue, name: str, max_items: int) -> tuple[bytes, ...]:
    return tuple(_bytes(item, name, ID_BYTES) for item in _list(value, name, max_items))


# --- frames ----------------------------------------------------------------------------------


class Frame(Protocol):
    TYPE: ClassVar[FrameType]

    def fields(self) -> list[CborValue]: ...


@dataclass(frozen=True, slots=True)
class Hello:
    """Opens a session: proves the sender's node key and binds it to this DTLS connection.

    The signature covers every other field, including both DTLS certificate fingerprints as the
    sender sees them. The receiver checks that the sender's ``local_fingerprint`` is the remote
    fingerprint it sees and the sender's ``remote_fingerprint`` its own; a relay or a man in the
    middle has other certificates on each leg, so it cannot present another node's HELLO.
    """

    TYPE: ClassVar[FrameType] = FrameType.HELLO
    #: Sender's node id (Ed25519 public key).
    node_id: bytes
    #: Id of the sender's genesis event; 32 zero bytes when it has none yet.
    network_id: bytes
    #: The sender's genesis event itself (encoded), so a node without one can adopt it; or b"".
    genesis: bytes
    #: 16 random bytes, fresh per connection.
    nonce: bytes
    #: Fingerprint of the sender's DTLS certificate ("sha-256 AB:CD:...").
    local_fingerprint: str
    #: Fingerprint of the receiver's DTLS certificate, as the sender sees it.
    remote_fingerprint: str
    #: Sender's display name.
    name: str
    #: Sender's mesh (signalling) port, for peer exchange; 0 when it accepts no inbound offers.
    mesh_port: int
    #: Events the receiver may push before the sender grants more credit.
    credit: int
    #: Ed25519 signature by node_id over the other fields.
    sig: bytes

    def _signed(self) -> bytes:
        return codec.encode(self.fields()[:-1])

    def fields(self) -> list[CborValue]:
        return [
            self.node_id,
            self.network_id,
            self.genesis,
            self.nonce,
            self.local_fingerprint,
            self.remote_fingerprint,
            self.name,
            self.mesh_port,
            self.credit,
            self.sig,
        ]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        return cls(
            node_id=_bytes(f[0], "hello.node_id", KEY_BYTES),
            network_id=_bytes(f[1], "hello.network_id", ID_BYTES),
            genesis=_blob(f[2], "hello.genesis", MAX_EVENT_BYTES),
            nonce=_bytes(f[3], "hello.nonce", NONCE_BYTES),
            local_fingerprint=_text(f[4], "hello.local_fingerprint", MAX_FINGERPRINT_CHARS),
            remote_fingerprint=_text(f[5], "hello.remote_fingerprint", MAX_FINGERPRINT_CHARS),
            name=_text(f[6], "hello.name", MAX_NAME_BYTES),
            mesh_port=_uint(f[7], "hello.mesh_port", 65535),
            credit=_uint(f[8], "hello.credit", 1 << 20),
            sig=_bytes(f[9], "hello.sig", SIGNATURE_BYTES),
        )

    @classmethod
    def create(
        cls,
        key: SigningKey,
        *,
        network_id: bytes,
        genesis: bytes,
        nonce: bytes,
        local_fingerprint: str,
        remote_fingerprint: str,
        name: str,
        mesh_port: int,
        credit: int,
    ) -> Hello:
        unsigned = cls(
            key.public,
            network_id,
            genesis,
            nonce,
            local_fingerprint,
            remote_fingerprint,
            name,
            mesh_port,
            credit,
            bytes(SIGNATURE_BYTES),
        )
        sig = key.sign(DOMAIN_HELLO, unsigned._signed())
        return cls(
            key.public,
            network_id,
            genesis,
            nonce,
            local_fingerprint,
            remote_fingerprint,
            name,
            mesh_port,
            credit,
            sig,
        )

    def signature_valid(self) -> bool:
        return verify(self.node_id, self.sig, DOMAIN_HELLO, self._signed())


@dataclass(frozen=True, slots=True)
class Events:
    """A batch of encoded events: pushed eagerly, or (``reply``) answering WANT or GET_RANGE."""

    TYPE: ClassVar[FrameType] = FrameType.EVENTS
    #: Encoded signed events, each at most MAX_EVENT_BYTES.
    events: tuple[bytes, ...]
    #: True when the frame answers a request; a duplicate in a reply does not prune the sender.
    reply: bool = False

    def fields(self) -> list[CborValue]:
        return [list(self.events), self.reply]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        items = _list(f[0], "events", MAX_EVENTS_PER_FRAME)
        return cls(
            tuple(_blob(item, "events[]", MAX_EVENT_BYTES) for item in items),
            _bool(f[1], "events.reply"),
        )


@dataclass(frozen=True, slots=True)
class Have:
    """Lazy announcement: the sender has these event ids (Plumtree's IHAVE)."""

    TYPE: ClassVar[FrameType] = FrameType.HAVE
    ids: tuple[bytes, ...]

    def fields(self) -> list[CborValue]:
        return [list(self.ids)]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        return cls(_ids(f[0], "have.ids", MAX_IDS_PER_FRAME))


@dataclass(frozen=True, slots=True)
class Want:
    """Asks for events by id; ``graft`` also asks the receiver to push eagerly to the sender."""

    TYPE: ClassVar[FrameType] = FrameType.WANT
    ids: tuple[bytes, ...]
    graft: bool

    def fields(self) -> list[CborValue]:
        return [list(self.ids), self.graft]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        return cls(_ids(f[0], "want.ids", MAX_IDS_PER_FRAME), _bool(f[1], "want.graft"))


@dataclass(frozen=True, slots=True)
class FeedHead:
    """The latest event this node has of one author (a frozen author's head is the event just
    before its fork)."""

    author: bytes
    seq: int
    head_id: bytes


@dataclass(frozen=True, slots=True)
class Heads:
    """Anti-entropy: a digest of all heads, and some or all of the heads themselves.

    A frame with an empty ``heads`` list is a digest only; a receiver whose digest differs answers
    with its heads (``reply`` set, so the exchange does not loop). ``part`` counts frames of one
    answer from 0; ``last`` marks the final one.
    """

    TYPE: ClassVar[FrameType] = FrameType.HEADS
    #: SHA-256 over the sender's sorted (author, seq, head_id) triples.
    digest: bytes
    heads: tuple[FeedHead, ...]
    reply: bool
    part: int
    last: bool

    def fields(self) -> list[CborValue]:
        return [
            self.digest,
            [[h.author, h.seq, h.head_id] for h in self.heads],
            self.reply,
            self.part,
            self.last,
        ]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        heads: list[FeedHead] = []
        for entry in _list(f[1], "heads.heads", MAX_HEADS_PER_FRAME):
            item = _list(entry, "heads.heads[]", 3)
            if len(item) != 3:
                raise DecodeError("a head is [author, seq, head_id]")
            heads.append(
                FeedHead(
                    _bytes(item[0], "head.author", KEY_BYTES),
                    _uint(item[1], "head.seq", low=1),
                    _bytes(item[2], "head.head_id", ID_BYTES),
                )
            )
        return cls(
            _bytes(f[0], "heads.digest", ID_BYTES),
            tuple(heads),
            _bool(f[2], "heads.reply"),
            _uint(f[3], "heads.part", 1 << 20),
            _bool(f[4], "heads.last"),
        )


def heads_digest(heads: list[tuple[bytes, int, bytes]]) -> bytes:
    """The digest of a set of heads; equal digests mean equal head sets."""
    digest = hashlib.sha256()
    for author, seq, head_id in sorted(heads):
        digest.update(author + seq.to_bytes(8, "big") + head_id)
    return digest.digest()


@dataclass(frozen=True, slots=True)
class GetRange:
    """Asks for an author's events from ``start`` to ``stop`` inclusive (at most 256)."""

    TYPE: ClassVar[FrameType] = FrameType.GET_RANGE
    author: bytes
    start: int
    stop: int

    def fields(self) -> list[CborValue]:
        return [self.author, self.start, self.stop]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        frame = cls(
            _bytes(f[0], "get_range.author", KEY_BYTES),
            _uint(f[1], "get_range.start", low=1),
            _uint(f[2], "get_range.stop", low=1),
        )
        if not 0 <= frame.stop - frame.start < MAX_RANGE_EVENTS:
            raise DecodeError(f"a range spans 1..{MAX_RANGE_EVENTS} events")
        return frame


@dataclass(frozen=True, slots=True)
class Ping:
    """Keep-alive and RTT probe; answered by PONG with the same nonce."""

    TYPE: ClassVar[FrameType] = FrameType.PING
    nonce: int

    def fields(self) -> list[CborValue]:
        return [self.nonce]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        return cls(_uint(f[0], "ping.nonce", (1 << 64) - 1))


@dataclass(frozen=True, slots=True)
class Pong:
    TYPE: ClassVar[FrameType] = FrameType.PONG
    nonce: int

    def fields(self) -> list[CborValue]:
        return [self.nonce]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        return cls(_uint(f[0], "pong.nonce", (1 << 64) - 1))


@dataclass(frozen=True, slots=True)
class Routed:
    """A message for one node, relayed hop by hop along the mesh.

    ``src`` signs (dst, msg_id, kind, payload, network_id) so that no relay can forge or alter a
    message, claim another origin, or carry it into another mesh; ``ttl`` and ``path`` change at
    every hop and are not signed.
    """

    TYPE: ClassVar[FrameType] = FrameType.ROUTED
    src: bytes
    dst: bytes
    ttl: int
    #: Node ids the message has crossed, src first.
    path: tuple[bytes, ...]
    #: 16 random bytes naming the message (for acknowledgements and duplicate suppression).
    msg_id: bytes
    #: What the payload is: "direct", "ack" or "signal".
    kind: str
    payload: bytes
    #: Id of the genesis of the mesh the message belongs to.
    network_id: bytes
    sig: bytes

    def _signed(self) -> bytes:
        return codec.encode(
            [self.src, self.dst, self.msg_id, self.kind, self.payload, self.network_id]
        )

    def fields(self) -> list[CborValue]:
        return [
            self.src,
            self.dst,
            self.ttl,
            list(self.path),
            self.msg_id,
            self.kind,
            self.payload,
            self.network_id,
            self.sig,
        ]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        path = tuple(
            _bytes(item, "routed.path[]", KEY_BYTES)
            for item in _list(f[3], "routed.path", MAX_ROUTED_TTL + 1)
        )
        return cls(
            _bytes(f[0], "routed.src", KEY_BYTES),
            _bytes(f[1], "routed.dst", KEY_BYTES),
            _uint(f[2], "routed.ttl", MAX_ROUTED_TTL),
            path,
            _bytes(f[4], "routed.msg_id", NONCE_BYTES),
            _routed_kind(f[5]),
            _blob(f[6], "routed.payload", MAX_ROUTED_PAYLOAD_BYTES),
            _bytes(f[7], "routed.network_id", ID_BYTES),
            _bytes(f[8], "routed.sig", SIGNATURE_BYTES),
        )

    @classmethod
    def create(
        cls,
        key: SigningKey,
        *,
        network_id: bytes,
        dst: bytes,
        ttl: int,
        msg_id: bytes,
        kind: str,
        payload: bytes,
    ) -> Routed:
        path = (key.public,)
        unsigned = cls(key.public, dst, ttl, path, msg_id, kind, payload, network_id, b"")
        sig = key.sign(DOMAIN_ROUTED, unsigned._signed())
        return cls(key.public, dst, ttl, path, msg_id, kind, payload, network_id, sig)

    def signature_valid(self) -> bool:
        return verify(self.src, self.sig, DOMAIN_ROUTED, self._signed())


@dataclass(frozen=True, slots=True)
class Signal:
    """A signed WebRTC offer or answer, carried by POST /signal or inside a ROUTED frame; or the
    refusal of an offer that came over the mesh."""

    TYPE: ClassVar[FrameType] = FrameType.SIGNAL
    sender: bytes
    recipient: bytes
    #: Sender's wall clock in milliseconds; stale signals are refused.
    ts: int
    #: 16 random bytes naming this connection attempt; an answer repeats its offer's.
    session: bytes
    #: "offer", "answer" or "refusal".
    kind: str
    #: The SDP text; in a refusal, the refusal's code.
    sdp: str
    #: Id of the sender's genesis, or zeros.
    network_id: bytes
    sig: bytes

    def _signed(self) -> bytes:
        return codec.encode(self.fields()[:-1])

    def fields(self) -> list[CborValue]:
        return [
            self.sender,
            self.recipient,
            self.ts,
            self.session,
            self.kind,
            self.sdp,
            self.network_id,
            self.sig,
        ]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        kind = _text(f[4], "signal.kind", 8)
        if kind not in ("offer", "answer", "refusal"):
            raise DecodeError("signal.kind must be offer, answer or refusal")
        sdp = _text(f[5], "signal.sdp", MAX_ROUTED_PAYLOAD_BYTES - 512)
        if kind == "refusal" and not REFUSAL_CODE.fullmatch(sdp):
            raise DecodeError("a refusal's code is 1-32 characters a-z and _")
        return cls(
            _bytes(f[0], "signal.sender", KEY_BYTES),
            _bytes(f[1], "signal.recipient", KEY_BYTES),
            _uint(f[2], "signal.ts", (1 << 53) - 1),
            _bytes(f[3], "signal.session", NONCE_BYTES),
            kind,
            sdp,
            _bytes(f[6], "signal.network_id", ID_BYTES),
            _bytes(f[7], "signal.sig", SIGNATURE_BYTES),
        )

    @classmethod
    def create(
        cls,
        key: SigningKey,
        *,
        recipient: bytes,
        ts: int,
        session: bytes,
        kind: str,
        sdp: str,
        network_id: bytes,
    ) -> Signal:
        unsigned = cls(key.public, recipient, ts, session, kind, sdp, network_id, b"")
        sig = key.sign(DOMAIN_SIGNAL, unsigned._signed())
        return cls(key.public, recipient, ts, session, kind, sdp, network_id, sig)

    def signature_valid(self) -> bool:
        return verify(self.sender, self.sig, DOMAIN_SIGNAL, self._signed())


@dataclass(frozen=True, slots=True)
class Bye:
    """Ends the session; the reason code says whether to come back."""

    TYPE: ClassVar[FrameType] = FrameType.BYE
    reason: CloseReason
    detail: str

    def fields(self) -> list[CborValue]:
        return [int(self.reason), self.detail]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        code = _uint(f[0], "bye.reason", 255)
        try:
            reason = CloseReason(code)
        except ValueError:
            reason = CloseReason.NORMAL
        return cls(reason, _text(f[1], "bye.detail", MAX_REASON_BYTES))


@dataclass(frozen=True, slots=True)
class Prune:
    """Plumtree's PRUNE: stop pushing events eagerly to the sender; announce them lazily."""

    TYPE: ClassVar[FrameType] = FrameType.PRUNE

    def fields(self) -> list[CborValue]:
        return []

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        return cls()


@dataclass(frozen=True, slots=True)
class Credit:
    """Back-pressure: the sender may now push ``events`` more events to the receiver of this."""

    TYPE: ClassVar[FrameType] = FrameType.CREDIT
    events: int

    def fields(self) -> list[CborValue]:
        return [self.events]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        return cls(_uint(f[0], "credit.events", 1 << 20))


@dataclass(frozen=True, slots=True)
class Fork:
    """A fork proof: two valid events of one author with the same seq."""

    TYPE: ClassVar[FrameType] = FrameType.FORK
    event_a: bytes
    event_b: bytes

    def fields(self) -> list[CborValue]:
        return [self.event_a, self.event_b]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        return cls(
            _blob(f[0], "fork.event_a", MAX_EVENT_BYTES),
            _blob(f[1], "fork.event_b", MAX_EVENT_BYTES),
        )


@dataclass(frozen=True, slots=True)
class LinkNeighbour:
    node: bytes
    #: Smoothed round-trip time in microseconds.
    rtt_us: int
    #: Lost keep-alives per thousand.
    loss_permille: int


@dataclass(frozen=True, slots=True)
class LinkState:
    """A node's signed list of neighbours with measured RTT and loss; the latest seq wins."""

    TYPE: ClassVar[FrameType] = FrameType.LINK_STATE
    node: bytes
    seq: int
    #: Signer's wall clock in milliseconds.
    ts: int
    neighbours: tuple[LinkNeighbour, ...]
    network_id: bytes
    sig: bytes

    def _signed(self) -> bytes:
        return codec.encode(self.fields()[:-1])

    def fields(self) -> list[CborValue]:
        return [
            self.node,
            self.seq,
            self.ts,
            [[n.node, n.rtt_us, n.loss_permille] for n in self.neighbours],
            self.network_id,
            self.sig,
        ]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        neighbours: list[LinkNeighbour] = []
        for entry in _list(f[3], "link_state.neighbours", MAX_LINK_NEIGHBOURS):
            item = _list(entry, "link_state.neighbours[]", 3)
            if len(item) != 3:
                raise DecodeError("a neighbour is [node, rtt_us, loss_permille]")
            neighbours.append(
                LinkNeighbour(
                    _bytes(item[0], "neighbour.node", KEY_BYTES),
                    _uint(item[1], "neighbour.rtt_us", 3_600_000_000),
                    _uint(item[2], "neighbour.loss_permille", 1000),
                )
            )
        return cls(
            _bytes(f[0], "link_state.node", KEY_BYTES),
            _uint(f[1], "link_state.seq", low=1),
            _uint(f[2], "link_state.ts", (1 << 53) - 1),
            tuple(neighbours),
            _bytes(f[4], "link_state.network_id", ID_BYTES),
            _bytes(f[5], "link_state.sig", SIGNATURE_BYTES),
        )

    @classmethod
    def create(
        cls,
        key: SigningKey,
        *,
        seq: int,
        ts: int,
        neighbours: tuple[LinkNeighbour, ...],
        network_id: bytes,
    ) -> LinkState:
        unsigned = cls(key.public, seq, ts, neighbours, network_id, b"")
        sig = key.sign(DOMAIN_LINK_STATE, unsigned._signed())
        return cls(key.public, seq, ts, neighbours, network_id, sig)

    def signature_valid(self) -> bool:
        return verify(self.node, self.sig, DOMAIN_LINK_STATE, self._signed())


@dataclass(frozen=True, slots=True)
class LinkStates:
    """Several link-state records in one frame: a node floods what arrived in one pacing window
    together, so a burst of records costs each link one message instead of one per record."""

    TYPE: ClassVar[FrameType] = FrameType.LINK_STATES
    records: tuple[LinkState, ...]

    def fields(self) -> list[CborValue]:
        return [[record.fields() for record in self.records]]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        records = []
        for entry in _list(f[0], "link_states", MAX_LINK_STATES):
            item = _list(entry, "link_states[]", 6)
            if len(item) != 6:
                raise DecodeError("a link-state record has 6 fields")
            records.append(LinkState.from_fields(item))
        if not records:
            raise DecodeError("link_states is empty")
        return cls(tuple(records))


@dataclass(frozen=True, slots=True)
class PeerAddress:
    node: bytes
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Peers:
    """Peer exchange: mesh addresses of other nodes the sender knows."""

    TYPE: ClassVar[FrameType] = FrameType.PEERS
    peers: tuple[PeerAddress, ...]

    def fields(self) -> list[CborValue]:
        return [[[p.node, p.host, p.port] for p in self.peers]]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        peers: list[PeerAddress] = []
        for entry in _list(f[0], "peers", MAX_PEER_ADDRESSES):
            item = _list(entry, "peers[]", 3)
            if len(item) != 3:
                raise DecodeError("a peer address is [node, host, port]")
            peers.append(
                PeerAddress(
                    _bytes(item[0], "peer.node", KEY_BYTES),
                    _text(item[1], "peer.host", 64),
                    _uint(item[2], "peer.port", 65535, low=1),
                )
            )
        return cls(tuple(peers))


@dataclass(frozen=True, slots=True)
class Error:
    """A typed, non-fatal error about a frame the receiver of this sent."""

    TYPE: ClassVar[FrameType] = FrameType.ERROR
    code: str
    detail: str

    def fields(self) -> list[CborValue]:
        return [self.code, self.detail]

    @classmethod
    def from_fields(cls, f: list[CborValue]) -> Self:
        return cls(_text(f[0], "error.code", 64), _text(f[1], "error.detail", MAX_REASON_BYTES))


AnyFrame: TypeAlias = (
    Hello
    | Events
    | Have
    | Want
    | Heads
    | GetRange
    | Ping
    | Pong
    | Routed
    | Signal
    | Bye
    | Prune
    | Credit
    | Fork
    | LinkState
    | Peers
    | Error
    | LinkStates
)

FRAME_TYPES: dict[int, type[AnyFrame]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Events,
        Have,
        Want,
        Heads,
        GetRange,
        Ping,
        Pong,
        Routed,
        Signal,
        Bye,
        Prune,
        Credit,
        Fork,
        LinkState,
        Peers,
        Error,
        LinkStates,
    )
}

#: Number of fields after [version, type] for each frame type.
FIELD_COUNTS: dict[int, int] = {
    FrameType.HELLO: 10,
    FrameType.EVENTS: 2,
    FrameType.HAVE: 1,
    FrameType.WANT: 2,
    FrameType.HEADS: 5,
    FrameType.GET_RANGE: 3,
    FrameType.PING: 1,
    FrameType.PONG: 1,
    FrameType.ROUTED: 9,
    FrameType.SIGNAL: 8,
    FrameType.BYE: 2,
    FrameType.PRUNE: 0,
    FrameType.CREDIT: 1,
    FrameType.FORK: 2,
    FrameType.LINK_STATE: 6,
    FrameType.PEERS: 1,
    FrameType.ERROR: 2,
    FrameType.LINK_STATES: 1,
}


def encode_frame(frame: AnyFrame) -> bytes:
    return codec.encode([PROTOCOL_VERSION, int(frame.TYPE), *frame.fields()])


def decode_frame(data: bytes, max_bytes: int = MAX_FRAME_BYTES) -> AnyFrame:
    """The frame encoded in ``data``; raises only RemoteProtocolError subclasses."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("a frame is binary")
    if len(data) > max_bytes:
        raise TooLarge(f"frame of {len(data)} bytes exceeds {max_bytes}")
    value = codec.decode(bytes(data))
    if not isinstance(value, list) or len(value) < 2:
        raise DecodeError("a frame is an array [version, type, ...]")
    version, frame_type = value[0], value[1]
    if not isinstance(version, int) or isinstance(version, bool):
        raise DecodeError("frame version must be an integer")
    if version != PROTOCOL_VERSION:
        raise UnknownVersion(f"protocol version {version} is not spoken here ({PROTOCOL_VERSION})")
    if not isinstance(frame_type, int) or isinstance(frame_type, bool):
        raise DecodeError("frame type must be an integer")
    cls = FRAME_TYPES.get(frame_type)
    if cls is None:
        raise UnknownFrameType(f"unknown frame type {frame_type}")
    fields = value[2:]
    if len(fields) != FIELD_COUNTS[frame_type]:
        raise DecodeError(
            f"{cls.__name__} frame has {len(fields)} fields, expected {FIELD_COUNTS[frame_type]}"
        )
    return cls.from_fields(fields)
