"""Wire frames: round trips of every type, the envelope checks, size limits and signatures."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol.codec import CborValue
from protocol.errors import (
    CloseReason,
    DecodeError,
    RemoteProtocolError,
    TooLarge,
    UnknownFrameType,
    UnknownVersion,
)
from protocol.events import Event, Post
from protocol.frames import (
    FIELD_COUNTS,
    FRAME_TYPES,
    MAX_LINK_NEIGHBOURS,
    MAX_LINK_STATES,
    MAX_PEER_ADDRESSES,
    ROUTED_KINDS,
    AnyFrame,
    Bye,
    Credit,
    Error,
    Events,
    FeedHead,
    Fork,
    FrameType,
    GetRange,
    Have,
    Heads,
    Hello,
    LinkNeighbour,
    LinkState,
    LinkStates,
    PeerAddress,
    Peers,
    Ping,
    Pong,
    Prune,
    Routed,
    Signal,
    Want,
    decode_frame,
    encode_frame,
    heads_digest,
)
from protocol.identity import SigningKey
from protocol.limits import (
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
    PROTOCOL_VERSION,
)
from tests.protocol.helpers import GENESIS, NETWORK, NODE, T0, key

ALICE, BOB = key("alice"), key("bob")
ID_A, ID_B = GENESIS.id, bytes(range(32))
FINGERPRINT = "sha-256 " + ":".join(["AB"] * 32)
SDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
POST_A = Event.create(ALICE, NETWORK, seq=1, prev=bytes(32), ts=T0, body=Post("social", 3, "a"))
POST_B = Event.create(ALICE, NETWORK, seq=1, prev=bytes(32), ts=T0, body=Post("social", 3, "b"))


def sample_frames() -> list[AnyFrame]:
    """One typical frame of every type."""
    return [
        Hello.create(
            NODE,
            network_id=NETWORK,
            genesis=GENESIS.raw,
            nonce=bytes(range(16)),
            local_fingerprint=FINGERPRINT,
            remote_fingerprint=FINGERPRINT.replace("AB", "CD"),
            name="node-a",
            mesh_port=7_777,
            credit=512,
        ),
        Events((POST_A.raw, GENESIS.raw), reply=True),
        Have((ID_A, ID_B)),
        Want((ID_A,), graft=True),
        Heads(
            heads_digest([(ALICE.public, 3, ID_A)]),
            (FeedHead(ALICE.public, 3, ID_A),),
            reply=True,
            part=0,
            last=True,
        ),
        GetRange(ALICE.public, 1, MAX_RANGE_EVENTS),
        Ping((1 << 64) - 1),
        Pong(0),
        Routed.create(
            NODE,
            network_id=NETWORK,
            dst=ALICE.public,
            ttl=8,
            msg_id=bytes(16),
            kind="direct",
            payload=b"hi",
        ),
        Signal.create(
            NODE,
            recipient=ALICE.public,
            ts=T0,
            session=bytes(range(16, 32)),
            kind="offer",
            sdp=SDP,
            network_id=NETWORK,
        ),
        Bye(CloseReason.SHUTDOWN, "shutting down"),
        Prune(),
        Credit(512),
        Fork(POST_A.raw, POST_B.raw),
        LinkState.create(
            NODE,
            seq=1,
            ts=T0,
            neighbours=(LinkNeighbour(ALICE.public, 1_500, 3), LinkNeighbour(BOB.public, 90, 0)),
            network_id=NETWORK,
        ),
        Peers(
            (PeerAddress(ALICE.public, "192.168.1.20", 7_777), PeerAddress(BOB.public, "::1", 1))
        ),
        Error("rate_limited", "slow down"),
        LinkStates(
            (
                LinkState.create(
                    ALICE,
                    seq=2,
                    ts=T0,
                    neighbours=(LinkNeighbour(NODE.public, 700, 0),),
                    network_id=NETWORK,
                ),
                LinkState.create(BOB, seq=9, ts=T0, neighbours=(), network_id=NETWORK),
            )
        ),
    ]


SAMPLES = sample_frames()
SAMPLE_IDS = [type(f).__name__ for f in SAMPLES]


def sample(cls: type[AnyFrame]) -> AnyFrame:
    """The sample frame of type ``cls``."""
    return next(f for f in SAMPLES if type(f) is cls)


def header(frame_type: int, version: int = PROTOCOL_VERSION) -> list[CborValue]:
    return [version, frame_type]


def test_samples_cover_every_frame_type() -> None:
    assert {type(f) for f in SAMPLES} == set(FRAME_TYPES.values())
    assert set(FRAME_TYPES) == set(FrameType) == set(FIELD_COUNTS)
    for code, cls in FRAME_TYPES.items():
        assert code == cls.TYPE


@pytest.mark.parametrize("frame", SAMPLES, ids=SAMPLE_IDS)
def test_round_trip(frame: AnyFrame) -> None:
    raw = encode_frame(frame)
    assert len(frame.fields()) == FIELD_COUNTS[frame.TYPE]
    decoded = decode_frame(raw)
    assert decoded == frame
    assert type(decoded) is type(frame)
    assert encode_frame(decoded) == raw
    assert codec.decode(raw)[:2] == [PROTOCOL_VERSION, int(frame.TYPE)]  # type: ignore[index]


@pytest.mark.parametrize("frame", SAMPLES, ids=SAMPLE_IDS)
def test_bytes_like_input(frame: AnyFrame) -> None:
    raw = encode_frame(frame)
    assert decode_frame(bytearray(raw)) == frame  # type: ignore[arg-type]
    assert decode_frame(memoryview(raw)) == frame  # type: ignore[arg-type]


def test_text_is_not_a_frame() -> None:
    with pytest.raises(DecodeError):
        decode_frame("\x83\x01\x07\x00")  # type: ignore[arg-type]


# --- property: any valid frame round-trips --------------------------------------------------------

KEYS = st.binary(min_size=32, max_size=32)
NONCES = st.binary(min_size=16, max_size=16)
SIGS = st.binary(min_size=64, max_size=64)
U64 = st.integers(0, (1 << 64) - 1)
U63 = st.integers(0, (1 << 63) - 1)
SEQS = st.integers(1, (1 << 63) - 1)
TS = st.integers(0, (1 << 53) - 1)


def utf8(max_bytes: int) -> st.SearchStrategy[str]:
    """Text of at most ``max_bytes`` UTF-8 bytes (cut at a byte boundary, then made whole)."""
    return st.text(max_size=max_bytes).map(
        lambda s: s.encode()[:max_bytes].decode("utf-8", "ignore")
    )


FRAMES: st.SearchStrategy[AnyFrame] = st.one_of(
    st.builds(
        Hello,
        KEYS,
        KEYS,
        st.binary(max_size=64) | st.just(b"\x00" * MAX_EVENT_BYTES),
        NONCES,
        utf8(MAX_FINGERPRINT_CHARS),
        utf8(MAX_FINGERPRINT_CHARS),
        utf8(MAX_NAME_BYTES),
        st.integers(0, 65_535),
        st.integers(0, 1 << 20),
        SIGS,
    ),
    st.builds(
        Events,
        st.lists(st.binary(max_size=40), max_size=8).map(tuple)
        | st.just(tuple([b"e"] * MAX_EVENTS_PER_FRAME)),
        st.booleans(),
    ),
    st.builds(Have, st.lists(KEYS, max_size=MAX_IDS_PER_FRAME).map(tuple)),
    st.builds(Want, st.lists(KEYS, max_size=8).map(tuple), st.booleans()),
    st.builds(
        Heads,
        KEYS,
        st.lists(st.builds(FeedHead, KEYS, SEQS, KEYS), max_size=8).map(tuple),
        st.booleans(),
        st.integers(0, 1 << 20),
        st.booleans(),
    ),
    st.tuples(KEYS, SEQS, st.integers(0, MAX_RANGE_EVENTS - 1))
    .filter(lambda t: t[1] + t[2] < 1 << 63)
    .map(lambda t: GetRange(t[0], t[1], t[1] + t[2])),
    st.builds(Ping, U64),
    st.builds(Pong, U64),
    st.builds(
        Routed,
        KEYS,
        KEYS,
        st.integers(0, MAX_ROUTED_TTL),
        st.lists(KEYS, max_size=MAX_ROUTED_TTL + 1).map(tuple),
        NONCES,
        st.sampled_from(sorted(ROUTED_KINDS)),
        st.binary(max_size=64) | st.just(bytes(MAX_ROUTED_PAYLOAD_BYTES)),
        KEYS,
        SIGS,
    ),
    st.builds(
        Signal,
        KEYS,
        KEYS,
        TS,
        NONCES,
        st.sampled_from(["offer", "answer"]),
        utf8(200),
        KEYS,
        SIGS,
    ),
    st.builds(Bye, st.sampled_from(CloseReason), utf8(MAX_REASON_BYTES)),
    st.just(Prune()),
    st.builds(Credit, st.integers(0, 1 << 20)),
    st.builds(Fork, st.binary(max_size=64), st.binary(max_size=64)),
    st.builds(
        LinkState,
        KEYS,
        SEQS,
        TS,
        st.lists(
            st.builds(LinkNeighbour, KEYS, st.integers(0, 3_600_000_000), st.integers(0, 1000)),
            max_size=8,
        ).map(tuple),
        KEYS,
        SIGS,
    ),
    st.builds(
        Peers,
        st.lists(
            st.builds(PeerAddress, KEYS, utf8(64), st.integers(1, 65_535)),
            max_size=MAX_PEER_ADDRESSES,
        ).map(tuple),
    ),
    st.builds(Error, utf8(64), utf8(MAX_REASON_BYTES)),
)


@given(FRAMES)
def test_any_valid_frame_round_trips(frame: AnyFrame) -> None:
    raw = encode_frame(frame)
    assert len(raw) <= MAX_FRAME_BYTES
    decoded = decode_frame(raw)
    assert decoded == frame
    assert encode_frame(decoded) == raw


# --- envelope -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 255, -1, (1 << 64) - 1, -(1 << 64)])
def test_unknown_version(version: int) -> None:
    for frame in SAMPLES:
        raw = codec.encode([version, int(frame.TYPE), *frame.fields()])
        with pytest.raises(UnknownVersion) as info:
            decode_frame(raw)
        assert info.value.close == CloseReason.INCOMPATIBLE_VERSION
    # The version is judged before the type and the fields: a future version may change both.
    with pytest.raises(UnknownVersion):
        decode_frame(codec.encode([version, 99, "anything", {"at": "all"}]))
    with pytest.raises(UnknownVersion):
        decode_frame(codec.encode([version, "type"]))


@pytest.mark.parametrize("version", [True, False, None, "1", b"\x01", [1], {}])
def test_version_of_another_type(version: CborValue) -> None:
    with pytest.raises(DecodeError) as info:
        decode_frame(codec.encode([version, int(FrameType.PING), 1]))
    assert not isinstance(info.value, UnknownVersion)


@pytest.mark.parametrize("frame_type", [0, 19, 99, 255, -1, (1 << 64) - 1, -(1 << 64)])
def test_unknown_frame_type(frame_type: int) -> None:
    for fields in ([], [1], [b"x", "y", [], {}]):
        with pytest.raises(UnknownFrameType):
            decode_frame(codec.encode([*header(frame_type), *fields]))


@pytest.mark.parametrize("frame_type", [True, False, None, "7", b"\x07", [7]])
def test_frame_type_of_another_type(frame_type: CborValue) -> None:
    with pytest.raises(DecodeError) as info:
        decode_frame(codec.encode([PROTOCOL_VERSION, frame_type, 1]))
    assert not isinstance(info.value, UnknownFrameType)


@pytest.mark.parametrize(
    "value", [[], [PROTOCOL_VERSION], {}, {"v": 1, "t": 7}, 1, b"\x01\x07", "frame", None, True]
)
def test_not_a_frame_array(value: CborValue) -> None:
    with pytest.raises(DecodeError):
        decode_frame(codec.encode(value))


@pytest.mark.parametrize("frame", SAMPLES, ids=SAMPLE_IDS)
def test_extra_or_missing_fields(frame: AnyFrame) -> None:
    fields = frame.fields()
    head = header(int(frame.TYPE))
    extras: list[CborValue] = [None, 0, b"", [], {}]
    for extra in extras:
        with pytest.raises(DecodeError):
            decode_frame(codec.encode([*head, *fields, extra]))
    for i in range(len(fields)):
        with pytest.raises(DecodeError):
            decode_frame(codec.encode([*head, *fields[:i], *fields[i + 1 :]]))
    if fields:
        with pytest.raises(DecodeError):
            decode_frame(codec.encode([*head, *fields[:-1]]))


@pytest.mark.parametrize("frame", SAMPLES, ids=SAMPLE_IDS)
def test_wrong_field_types(frame: AnyFrame) -> None:
    """Every field replaced by a value of another CBOR type is a DecodeError."""
    fields = frame.fields()
    head = header(int(frame.TYPE))
    for i, value in enumerate(fields):
        others: list[CborValue] = [None, True, -1, "text", b"\x00", [None], {"k": 1}]
        for other in others:
            if type(other) is type(value) and not isinstance(value, list):
                continue
            changed = [*fields[:i], other, *fields[i + 1 :]]
            try:
                decoded = decode_frame(codec.encode([*head, *changed]))
            except DecodeError:
                continue
            pytest.fail(f"{type(frame).__name__} field {i} = {other!r} accepted as {decoded!r}")


def test_non_canonical_frame_is_a_decode_error() -> None:
    raw = encode_frame(Ping(5))
    assert raw == bytes.fromhex("83010705")
    for variant in ("8301071805", "8301180705", "9f010705ff", "9803010705", "8301070500"):
        with pytest.raises(DecodeError):
            decode_frame(bytes.fromhex(variant.replace(" ", "")))


# --- size limits ----------------------------------------------------------------------------------


def test_oversized_frame_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_parse(buf: bytes) -> CborValue:
        raise AssertionError("an oversized frame was parsed")

    monkeypatch.setattr(codec, "decode", must_not_parse)
    with pytest.raises(TooLarge):
        decode_frame(b"\xff" * (MAX_FRAME_BYTES + 1))
    with pytest.raises(TooLarge):
        decode_frame(b"\x83\x01\x07\x00", max_bytes=3)


def test_frame_size_boundary() -> None:
    base = encode_frame(Fork(b"", b""))
    pad = MAX_FRAME_BYTES - len(base) - 4  # two byte-string heads grow from 1 to 3 bytes
    exact = Fork(b"a" * (pad // 2), b"b" * (pad - pad // 2))
    raw = encode_frame(exact)
    assert len(raw) == MAX_FRAME_BYTES
    # Within the frame limit; the fields' own limits speak (each event is at most 8 KiB).
    with pytest.raises(TooLarge, match=r"fork\.event_a"):
        decode_frame(raw)
    with pytest.raises(TooLarge, match="exceeds"):
        decode_frame(raw + b"\x00")
    # A frame of exactly the limit whose fields are within theirs is accepted.
    full = [bytes(MAX_EVENT_BYTES)] * 7
    rest = MAX_FRAME_BYTES - len(encode_frame(Events((*full, b""), False))) - 2
    events = Events((*full, bytes(rest)), reply=False)
    assert len(encode_frame(events)) == MAX_FRAME_BYTES
    assert decode_frame(encode_frame(events)) == events


def test_configured_max_bytes_is_honoured() -> None:
    raw = encode_frame(SAMPLES[0])
    assert decode_frame(raw, max_bytes=len(raw)) == SAMPLES[0]
    with pytest.raises(TooLarge):
        decode_frame(raw, max_bytes=len(raw) - 1)


@pytest.mark.parametrize(
    ("fields", "frame_type"),
    [
        ([[b"e"] * (MAX_EVENTS_PER_FRAME + 1), False], FrameType.EVENTS),
        ([[bytes(MAX_EVENT_BYTES + 1)], False], FrameType.EVENTS),
        ([[ID_A] * (MAX_IDS_PER_FRAME + 1)], FrameType.HAVE),
        ([[ID_A] * (MAX_IDS_PER_FRAME + 1), True], FrameType.WANT),
        (
            [ID_A, [[ALICE.public, 1, ID_A]] * (MAX_HEADS_PER_FRAME + 1), True, 0, True],
            FrameType.HEADS,
        ),
        ([ID_A, [[ALICE.public, 1, ID_A, 0]], True, 0, True], FrameType.HEADS),
        ([[[ALICE.public, "h", 1]] * (MAX_PEER_ADDRESSES + 1)], FrameType.PEERS),
        ([[[ALICE.public, "h" * 65, 1]]], FrameType.PEERS),
        ([bytes(MAX_EVENT_BYTES + 1), b""], FrameType.FORK),
        ([CloseReason.NORMAL, "x" * (MAX_REASON_BYTES + 1)], FrameType.BYE),
        ([CloseReason.NORMAL, "\u00e9" * (MAX_REASON_BYTES // 2 + 1)], FrameType.BYE),
        (["c" * 65, ""], FrameType.ERROR),
    ],
    ids=repr,
)
def test_field_limits_are_too_large(fields: list[CborValue], frame_type: FrameType) -> None:
    with pytest.raises(TooLarge):
        decode_frame(codec.encode([*header(frame_type), *fields]))


def _link_state_fields(neighbours: list[CborValue]) -> list[CborValue]:
    return [NODE.public, 1, T0, neighbours, NETWORK, bytes(64)]


@pytest.mark.parametrize(
    ("fields", "frame_type"),
    [
        ([ALICE.public, 1, MAX_RANGE_EVENTS + 1], FrameType.GET_RANGE),
        ([ALICE.public, 5, 4], FrameType.GET_RANGE),
        ([ALICE.public, 0, 0], FrameType.GET_RANGE),
        ([-1], FrameType.PING),
        ([-(1 << 64)], FrameType.PONG),
        ([(1 << 20) + 1], FrameType.CREDIT),
        ([256, ""], FrameType.BYE),
        ([[[ALICE.public, "h", 0]]], FrameType.PEERS),
        ([[[ALICE.public, "h", 65_536]]], FrameType.PEERS),
        ([[[ALICE.public, "h"]]], FrameType.PEERS),
        (_link_state_fields([[ALICE.public, 1, 1001]]), FrameType.LINK_STATE),
        (_link_state_fields([[ALICE.public, 3_600_000_001, 0]]), FrameType.LINK_STATE),
        (_link_state_fields([[ALICE.public, 1]]), FrameType.LINK_STATE),
        (_link_state_fields([ALICE.public]), FrameType.LINK_STATE),
        (
            [NODE.public, 0, T0, [], NETWORK, bytes(64)],
            FrameType.LINK_STATE,
        ),
        ([[]], FrameType.LINK_STATES),
        ([[_link_state_fields([])[:5]]], FrameType.LINK_STATES),
        ([[_link_state_fields([[ALICE.public, 1, 1001]])]], FrameType.LINK_STATES),
        ([[_link_state_fields([])] * (MAX_LINK_STATES + 1)], FrameType.LINK_STATES),
        ([ID_A, [[ALICE.public, 0, ID_A]], True, 0, True], FrameType.HEADS),
        ([ID_A, [[ALICE.public, 1]], True, 0, True], FrameType.HEADS),
        ([ID_A, [], True, (1 << 20) + 1, True], FrameType.HEADS),
    ],
    ids=repr,
)
def test_field_ranges(fields: list[CborValue], frame_type: FrameType) -> None:
    with pytest.raises(DecodeError):
        decode_frame(codec.encode([*header(frame_type), *fields]))


def _routed_fields(**changes: CborValue) -> list[CborValue]:
    fields = dict(
        zip(
            ["src", "dst", "ttl", "path", "msg_id", "kind", "payload", "network_id", "sig"],
            sample(Routed).fields(),
            strict=True,
        )
    )
    fields.update(changes)
    return list(fields.values())


@pytest.mark.parametrize(
    "changes",
    [
        {"ttl": MAX_ROUTED_TTL + 1},
        {"path": [NODE.public] * (MAX_ROUTED_TTL + 2)},
        {"path": [b"short"]},
        {"payload": bytes(MAX_ROUTED_PAYLOAD_BYTES + 1)},
        {"kind": "k" * 17},
        {"msg_id": bytes(15)},
    ],
    ids=repr,
)
def test_routed_limits(changes: dict[str, CborValue]) -> None:
    with pytest.raises(DecodeError):
        decode_frame(codec.encode([*header(FrameType.ROUTED), *_routed_fields(**changes)]))


@pytest.mark.parametrize("kind", ["direct", "ack", "signal"])
def test_every_routed_kind_decodes(kind: str) -> None:
    frame = decode_frame(codec.encode([*header(FrameType.ROUTED), *_routed_fields(kind=kind)]))
    assert isinstance(frame, Routed) and frame.kind == kind


def test_an_unknown_routed_kind_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"routed\.kind"):
        decode_frame(codec.encode([*header(FrameType.ROUTED), *_routed_fields(kind="gossip")]))


def _signal(kind: str, sdp: str) -> Signal:
    return Signal.create(
        NODE, recipient=bytes(32), ts=1, session=bytes(16), kind=kind, sdp=sdp, network_id=bytes(32)
    )


@pytest.mark.parametrize("code", ["already_connected", "busy", "a", "z" * 32])
def test_a_refusal_carries_its_code(code: str) -> None:
    refusal = _signal("refusal", code)
    decoded = decode_frame(encode_frame(refusal))
    assert decoded == refusal and decoded.signature_valid()


@pytest.mark.parametrize("code", ["", "z" * 33, "Busy", "busy!", "v=0\r\no=- 1 1 IN IP4 127.0.0.1"])
def test_a_refusal_with_anything_but_a_code_is_refused(code: str) -> None:
    with pytest.raises(DecodeError, match="refusal"):
        decode_frame(encode_frame(_signal("refusal", code)))


def test_an_unknown_signal_kind_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"signal\.kind"):
        decode_frame(encode_frame(_signal("pranswer", "x")))


def test_routed_limits_at_the_boundary_are_accepted() -> None:
    fields = _routed_fields(
        ttl=MAX_ROUTED_TTL,
        path=[NODE.public] * (MAX_ROUTED_TTL + 1),
        payload=bytes(MAX_ROUTED_PAYLOAD_BYTES),
        kind="signal",
    )
    frame = decode_frame(codec.encode([*header(FrameType.ROUTED), *fields]))
    assert isinstance(frame, Routed)
    assert len(frame.path) == MAX_ROUTED_TTL + 1


def test_signal_kind_and_hello_fingerprint_limits() -> None:
    signal = sample(Signal)
    assert isinstance(signal, Signal)
    for kind in ("Offer", "", "pranswer", "offer "):
        fields = [*signal.fields()[:4], kind, *signal.fields()[5:]]
        with pytest.raises(DecodeError):
            decode_frame(codec.encode([*header(FrameType.SIGNAL), *fields]))
    hello = sample(Hello)
    assert isinstance(hello, Hello)
    long_fp = "f" * (MAX_FINGERPRINT_CHARS + 1)
    with pytest.raises(TooLarge):
        decode_frame(encode_frame(dataclasses.replace(hello, local_fingerprint=long_fp)))
    with pytest.raises(TooLarge):
        decode_frame(encode_frame(dataclasses.replace(hello, genesis=bytes(MAX_EVENT_BYTES + 1))))


def test_unknown_bye_reason_is_read_as_normal() -> None:
    """Forward compatibility: a reason code from a newer peer is not an error."""
    frame = decode_frame(codec.encode([*header(FrameType.BYE), 200, "future"]))
    assert frame == Bye(CloseReason.NORMAL, "future")


def test_a_full_heads_frame_fits_in_a_frame() -> None:
    """Anti-entropy splits heads by MAX_HEADS_PER_FRAME: a full frame must fit the frame limit."""
    heads = tuple(
        FeedHead(i.to_bytes(KEY_BYTES, "big"), (1 << 63) - 1, ID_A)
        for i in range(MAX_HEADS_PER_FRAME)
    )
    frame = Heads(heads_digest([(h.author, h.seq, h.head_id) for h in heads]), heads, True, 0, True)
    assert decode_frame(encode_frame(frame)) == frame


def test_other_frames_at_their_item_limits_fit_in_a_frame() -> None:
    key32 = b"\xff" * 32
    full: list[AnyFrame] = [
        Have((key32,) * MAX_IDS_PER_FRAME),
        Want((key32,) * MAX_IDS_PER_FRAME, graft=True),
        LinkState(
            key32,
            (1 << 63) - 1,
            (1 << 53) - 1,
            (LinkNeighbour(key32, 3_600_000_000, 1000),) * MAX_LINK_NEIGHBOURS,
            key32,
            bytes(64),
        ),
        Peers(
            (PeerAddress(key32, "h" * 64, 65_535),) * MAX_PEER_ADDRESSES,
        ),
        Routed(
            key32,
            key32,
            MAX_ROUTED_TTL,
            (key32,) * (MAX_ROUTED_TTL + 1),
            bytes(16),
            "signal",
            bytes(MAX_ROUTED_PAYLOAD_BYTES),
            key32,
            bytes(64),
        ),
    ]
    for frame in full:
        assert decode_frame(encode_frame(frame)) == frame


# --- signatures -----------------------------------------------------------------------------------

OTHER = SigningKey.for_label("mallory")


def _altered(value: object) -> object:
    """A different value of the same shape as ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, bytes):
        return bytes([value[0] ^ 1]) + value[1:] if value else b"\x00"
    if isinstance(value, str):
        swaps = {"offer": "answer", "answer": "offer", "direct": "ack", "ack": "direct"}
        return swaps.get(value, value + "x")
    if isinstance(value, tuple):
        if not value:
            return (LinkNeighbour(OTHER.public, 1, 1),)
        first = value[0]
        if isinstance(first, LinkNeighbour):
            return (dataclasses.replace(first, rtt_us=first.rtt_us + 1), *value[1:])
        return value[:-1]
    raise AssertionError(f"no alteration for {value!r}")


SIGNED = [f for f in SAMPLES if isinstance(f, Hello | Signal | Routed | LinkState)]
#: Fields a relay changes at every hop; they are deliberately not signed.
UNSIGNED_FIELDS = {"Routed": {"ttl", "path"}}


@pytest.mark.parametrize("frame", SIGNED, ids=[type(f).__name__ for f in SIGNED])
def test_signature_verifies_after_a_round_trip(frame: Hello | Signal | Routed | LinkState) -> None:
    assert frame.signature_valid()
    decoded = decode_frame(encode_frame(frame))
    assert isinstance(decoded, type(frame))
    assert decoded.signature_valid()


@pytest.mark.parametrize("frame", SIGNED, ids=[type(f).__name__ for f in SIGNED])
def test_altering_any_signed_field_breaks_the_signature(
    frame: Hello | Signal | Routed | LinkState,
) -> None:
    name = type(frame).__name__
    unsigned = UNSIGNED_FIELDS.get(name, set())
    for field in dataclasses.fields(frame):
        change: dict[str, Any] = {field.name: _altered(getattr(frame, field.name))}
        altered = dataclasses.replace(frame, **change)
        # The altered frame still decodes: only the signature check can catch it.
        decoded = decode_frame(encode_frame(altered))
        assert decoded == altered
        if field.name in unsigned:
            assert decoded.signature_valid(), f"{name}.{field.name} is not meant to be signed"
        else:
            assert not decoded.signature_valid(), f"{name}.{field.name} is not covered"


@pytest.mark.parametrize("frame", SIGNED, ids=[type(f).__name__ for f in SIGNED])
def test_flipping_any_byte_of_a_signed_frame_is_rejected(
    frame: Hello | Signal | Routed | LinkState,
) -> None:
    """Single bit flips: a typed decode error, or a frame whose signature fails (or unsigned)."""
    raw = encode_frame(frame)
    for pos in range(len(raw)):
        for pattern in (0x01, 0x80):
            mutated = bytearray(raw)
            mutated[pos] ^= pattern
            try:
                decoded = decode_frame(bytes(mutated))
            except RemoteProtocolError:
                continue
            assert isinstance(decoded, type(frame))
            if decoded.signature_valid():
                changed = {
                    f.name
                    for f in dataclasses.fields(frame)
                    if getattr(decoded, f.name) != getattr(frame, f.name)
                }
                assert changed <= UNSIGNED_FIELDS.get(type(frame).__name__, set()), changed


@pytest.mark.parametrize("frame", SIGNED, ids=[type(f).__name__ for f in SIGNED])
def test_signature_of_another_key(frame: Hello | Signal | Routed | LinkState) -> None:
    key_field = {"Hello": "node_id", "Signal": "sender", "Routed": "src", "LinkState": "node"}
    change: dict[str, Any] = {key_field[type(frame).__name__]: OTHER.public}
    impostor = dataclasses.replace(frame, **change)
    assert not impostor.signature_valid()


def test_signatures_are_domain_separated() -> None:
    """A LinkState signature is not valid for a Signal with the same signed bytes, and so on."""
    link = sample(LinkState)
    assert isinstance(link, LinkState)
    signal = sample(Signal)
    assert isinstance(signal, Signal)
    forged = dataclasses.replace(signal, sig=link.sig)
    assert not forged.signature_valid()
    hello = sample(Hello)
    assert isinstance(hello, Hello)
    assert not dataclasses.replace(signal, sig=hello.sig).signature_valid()


def test_hello_signature_covers_both_fingerprints() -> None:
    """A relay with other DTLS certificates cannot reuse a HELLO (the MITM defence)."""
    hello = sample(Hello)
    assert isinstance(hello, Hello)
    for field in ("local_fingerprint", "remote_fingerprint"):
        change: dict[str, Any] = {field: "sha-256 " + ":".join(["EF"] * 32)}
        swapped = dataclasses.replace(hello, **change)
        assert not swapped.signature_valid()
    both = dataclasses.replace(
        hello,
        local_fingerprint=hello.remote_fingerprint,
        remote_fingerprint=hello.local_fingerprint,
    )
    assert not both.signature_valid()
