"""Signed events: round trips, ids, network binding, tamper detection and the body schemas."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol.codec import CborValue
from protocol.errors import (
    BadSignature,
    DecodeError,
    LiberationError,
    MalformedEvent,
    TooLarge,
    UnknownKind,
)
from protocol.events import (
    BODY_TYPES,
    GENESIS_NETWORK,
    SEND_PURPOSES,
    ZERO_ID,
    Body,
    Claim,
    Enroll,
    Event,
    Genesis,
    Post,
    Send,
    valid_channel,
)
from protocol.identity import DOMAIN_EVENT, SigningKey, verify
from protocol.limits import (
    MAX_AMOUNT,
    MAX_CHANNEL_BYTES,
    MAX_EVENT_BYTES,
    MAX_MEMO_BYTES,
    MAX_NAME_BYTES,
    MAX_POST_CONTENT_BYTES,
)
from tests.protocol.helpers import GENESIS, GENESIS_BODY, NETWORK, NODE, POOL, T0, Driven, key

ALICE, BOB = key("alice"), key("bob")
OTHER_NETWORK = hashlib.sha256(b"another mesh").digest()
PREV = hashlib.sha256(b"some earlier event").digest()

#: A valid body of each kind, as the CBOR map that goes on the wire.
BODIES: dict[str, dict[str, CborValue]] = {
    "genesis": GENESIS_BODY.to_cbor(),
    "enroll": {"name": "alice", "node": NODE.public},
    "send": {"to": BOB.public, "amount": 1_050, "purpose": "transfer", "memo": "rent"},
    "claim": {"send": PREV, "sender": BOB.public, "send_seq": 7, "amount": 1_050},
    "post": {"channel": "social", "priority": 3, "content": "hello, mesh \u2764"},
}


def signed_raw(
    body: CborValue,
    *,
    kind: str = "post",
    signer: SigningKey = ALICE,
    network: bytes = NETWORK,
    version: CborValue = 1,
    author: CborValue = None,
    seq: CborValue = 2,
    prev: CborValue = PREV,
    ts: CborValue = T0,
) -> bytes:
    """An event encoding built field by field and signed, so that any field may be wrong."""
    unsigned: list[CborValue] = [
        version,
        signer.public if author is None else author,
        seq,
        prev,
        ts,
        kind,
        body,
    ]
    sig = signer.sign(DOMAIN_EVENT, network + codec.encode(unsigned))
    return codec.encode([*unsigned, sig])


def decode_body(kind: str, body: CborValue) -> Body:
    """Decode a signed event of ``kind`` carrying ``body``; the signature is checked as well."""
    seq, prev = (1, ZERO_ID) if kind in ("genesis", "enroll") else (2, PREV)
    network = GENESIS_NETWORK if kind == "genesis" else NETWORK
    event = Event.decode(signed_raw(body, kind=kind, seq=seq, prev=prev, network=network))
    event.check_signature(NETWORK)
    return event.body


def sample_events() -> list[Event]:
    """One valid signed event of every kind."""
    events = [GENESIS]
    for kind in ("enroll", "send", "claim", "post"):
        body = BODY_TYPES[kind].from_cbor(BODIES[kind])
        first = kind == "enroll"
        events.append(
            Event.create(
                ALICE,
                NETWORK,
                seq=1 if first else 2,
                prev=ZERO_ID if first else PREV,
                ts=T0 + 5,
                body=body,
            )
        )
    return events


SAMPLES = sample_events()
SAMPLE_IDS = [event.kind for event in SAMPLES]


# --- round trips, ids, signatures ----------------------------------------------------------------


@pytest.mark.parametrize("event", SAMPLES, ids=SAMPLE_IDS)
def test_create_decode_round_trip(event: Event) -> None:
    decoded = Event.decode(event.raw)
    assert decoded.raw == event.raw
    assert decoded.id == event.id
    assert decoded == event
    assert hash(decoded) == hash(event)
    assert (decoded.author, decoded.seq, decoded.prev, decoded.ts, decoded.sig) == (
        event.author,
        event.seq,
        event.prev,
        event.ts,
        event.sig,
    )
    assert decoded.body == event.body
    assert decoded.kind == event.kind == type(event.body).KIND
    fields: list[CborValue] = [1, event.author, event.seq, event.prev, event.ts, event.kind]
    assert codec.encode([*fields, event.body.to_cbor(), event.sig]) == event.raw


@pytest.mark.parametrize("event", SAMPLES, ids=SAMPLE_IDS)
def test_id_is_sha256_of_raw(event: Event) -> None:
    assert event.id == hashlib.sha256(event.raw).digest()
    assert Event.decode(event.raw).id == hashlib.sha256(event.raw).digest()


@pytest.mark.parametrize("event", SAMPLES[1:], ids=SAMPLE_IDS[1:])
def test_signature_binds_the_network(event: Event) -> None:
    decoded = Event.decode(event.raw)
    decoded.check_signature(NETWORK)
    for network in (OTHER_NETWORK, ZERO_ID, NETWORK[:-1] + bytes([NETWORK[-1] ^ 1])):
        with pytest.raises(BadSignature):
            decoded.check_signature(network)


def test_signed_part_is_the_seven_item_array() -> None:
    for event in SAMPLES:
        unsigned: list[CborValue] = [1, event.author, event.seq, event.prev, event.ts, event.kind]
        assert event.signed_part() == codec.encode([*unsigned, event.body.to_cbor()])


def test_genesis_is_signed_under_the_zero_network_id() -> None:
    assert GENESIS_NETWORK == ZERO_ID
    signed = GENESIS.signed_part()
    assert verify(POOL.public, GENESIS.sig, DOMAIN_EVENT, ZERO_ID + signed)
    assert not verify(POOL.public, GENESIS.sig, DOMAIN_EVENT, NETWORK + signed)
    # The genesis verifies whatever network the caller thinks it is in: its id *is* the network.
    for network in (NETWORK, OTHER_NETWORK, ZERO_ID):
        Event.decode(GENESIS.raw).check_signature(network)
    # It is the same event whichever network id create() is given.
    again = Event.create(POOL, OTHER_NETWORK, seq=1, prev=ZERO_ID, ts=T0, body=GENESIS_BODY)
    assert again.raw == GENESIS.raw


def test_a_non_genesis_event_signed_under_the_zero_id_does_not_verify_in_a_mesh() -> None:
    event = Event.create(ALICE, ZERO_ID, seq=1, prev=ZERO_ID, ts=T0, body=Enroll("", NODE.public))
    event.check_signature(ZERO_ID)
    with pytest.raises(BadSignature):
        event.check_signature(NETWORK)


def test_another_key_cannot_claim_authorship() -> None:
    raw = signed_raw(BODIES["post"], author=BOB.public)
    event = Event.decode(raw)
    with pytest.raises(BadSignature):
        event.check_signature(NETWORK)


def test_an_author_that_is_not_a_curve_point_fails_the_signature_check() -> None:
    # Valid point encodings or not, any 32 bytes end in BadSignature, never in a library error.
    for author in (bytes(32), b"\xff" * 32, b"\x02" + bytes(31)):
        event = Event.decode(signed_raw(BODIES["post"], author=author))
        with pytest.raises(BadSignature):
            event.check_signature(NETWORK)


def test_equality_is_by_id() -> None:
    a = Event.create(ALICE, NETWORK, seq=2, prev=PREV, ts=T0, body=Post("social", 3, "x"))
    b = Event.create(ALICE, NETWORK, seq=2, prev=PREV, ts=T0, body=Post("social", 3, "x"))
    c = Event.create(ALICE, NETWORK, seq=2, prev=PREV, ts=T0, body=Post("social", 3, "y"))
    assert a == b
    assert a != c
    assert len({a, b, c}) == 2
    assert a != a.raw


# --- tampering ---------------------------------------------------------------------------------

#: Every single bit, and all bits at once.
FLIP_PATTERNS = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF)


def decode_and_check(raw: bytes) -> str:
    """The error code the receive path gets for ``raw``; fails the test if it is not typed."""
    try:
        Event.decode(raw).check_signature(NETWORK)
    except LiberationError as exc:
        return exc.code
    except Exception as exc:
        pytest.fail(f"untyped {type(exc).__name__}: {exc} for {raw.hex()}")
    pytest.fail(f"tampered event accepted: {raw.hex()}")


@pytest.mark.parametrize("event", SAMPLES, ids=SAMPLE_IDS)
def test_flipping_any_byte_is_a_typed_rejection(event: Event) -> None:
    codes: set[str] = set()
    raw = event.raw
    for pos in range(len(raw)):
        for pattern in FLIP_PATTERNS:
            mutated = bytearray(raw)
            mutated[pos] ^= pattern
            codes.add(decode_and_check(bytes(mutated)))
    # Both layers were reached: the decoder and the signature check.
    assert {"decode_error", "bad_signature"} <= codes


@pytest.mark.parametrize("event", SAMPLES, ids=SAMPLE_IDS)
def test_setting_any_byte_to_any_value_is_a_typed_rejection_at_the_edges(event: Event) -> None:
    """Every value at the heads of the array, the version, the kind and the signature."""
    raw = event.raw
    positions = {0, 1, 2, len(raw) - 66, len(raw) - 65, len(raw) - 1}
    positions.add(raw.index(event.kind.encode()) - 1)
    for pos in positions:
        for value in range(256):
            if value != raw[pos]:
                decode_and_check(raw[:pos] + bytes([value]) + raw[pos + 1 :])


@given(
    index=st.sampled_from(range(len(SAMPLES))),
    data=st.data(),
)
def test_any_small_edit_is_a_typed_rejection(index: int, data: st.DataObject) -> None:
    raw = bytearray(SAMPLES[index].raw)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
        else:
            del raw[pos]
    if bytes(raw) != SAMPLES[index].raw:
        decode_and_check(bytes(raw))


def test_truncations_and_extensions_are_decode_errors() -> None:
    raw = SAMPLES[-1].raw
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            Event.decode(raw[:cut])
    for tail in (b"\x00", b"\xf6", raw):
        with pytest.raises(DecodeError):
            Event.decode(raw + tail)


# --- envelope -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"version": 0}, DecodeError),
        ({"version": 2}, DecodeError),
        ({"version": -1}, DecodeError),
        ({"version": "1"}, DecodeError),
        ({"version": None}, DecodeError),
        ({"author": ALICE.public[:31]}, DecodeError),
        ({"author": ALICE.public + b"\x00"}, DecodeError),
        ({"author": ALICE.public.hex()}, DecodeError),
        ({"seq": 0}, DecodeError),
        ({"seq": -1}, DecodeError),
        ({"seq": 1 << 63}, DecodeError),
        ({"seq": True}, DecodeError),
        ({"seq": "2"}, DecodeError),
        ({"prev": PREV[:31]}, DecodeError),
        ({"prev": None}, DecodeError),
        ({"ts": -1}, DecodeError),
        ({"ts": 1 << 53}, DecodeError),
        ({"ts": False}, DecodeError),
        ({"kind": b"post"}, DecodeError),
        ({"kind": "posts"}, UnknownKind),
        ({"kind": "Post"}, UnknownKind),
        ({"kind": ""}, UnknownKind),
        ({"seq": 1}, MalformedEvent),
        ({"prev": ZERO_ID}, MalformedEvent),
    ],
    ids=repr,
)
def test_envelope_fields(fields: dict[str, CborValue], error: type[Exception]) -> None:
    raw = signed_raw(BODIES["post"], **fields)  # type: ignore[arg-type]
    with pytest.raises(error):
        Event.decode(raw)


def test_envelope_extremes_that_are_valid() -> None:
    event = Event.decode(signed_raw(BODIES["post"], seq=(1 << 63) - 1, ts=(1 << 53) - 1))
    event.check_signature(NETWORK)
    assert event.seq == (1 << 63) - 1
    assert Event.decode(signed_raw(BODIES["post"], ts=0)).ts == 0


@pytest.mark.parametrize(
    "value",
    [
        [],
        {},
        1,
        b"",
        None,
        [1] * 7,
        [1] * 9,
        [1, ALICE.public, 2, PREV, T0, "post", BODIES["post"], bytes(63)],
        [1, ALICE.public, 2, PREV, T0, "post", BODIES["post"], bytes(65)],
        [1, ALICE.public, 2, PREV, T0, "post", BODIES["post"], "sig"],
        [1, ALICE.public, 2, PREV, T0, "post", [], bytes(64)],
        [1, ALICE.public, 2, PREV, T0, "post", None, bytes(64)],
    ],
    ids=repr,
)
def test_not_an_event(value: CborValue) -> None:
    with pytest.raises(DecodeError):
        Event.decode(codec.encode(value))


def test_oversized_event_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_parse(buf: bytes) -> CborValue:
        raise AssertionError("an oversized event was parsed")

    monkeypatch.setattr(codec, "decode", must_not_parse)
    with pytest.raises(TooLarge):
        Event.decode(b"\x88" + bytes(MAX_EVENT_BYTES))


def test_size_limit_boundary() -> None:
    """An event of exactly MAX_EVENT_BYTES is decoded; one byte more is TooLarge."""
    # Pad a text body field until the event is exactly MAX_EVENT_BYTES long.
    base = signed_raw(BODIES["post"] | {"content": ""})
    padding = MAX_EVENT_BYTES - len(base) - 2  # the text head grows from 1 to 3 bytes
    raw = signed_raw(BODIES["post"] | {"content": "x" * padding})
    assert len(raw) == MAX_EVENT_BYTES
    with pytest.raises(MalformedEvent):  # within the size limit, so the schema speaks
        Event.decode(raw)
    with pytest.raises(TooLarge):
        Event.decode(signed_raw(BODIES["post"] | {"content": "x" * (padding + 1)}))
    with pytest.raises(MalformedEvent):  # create runs the schema first: the name is too long
        Event.create(
            POOL, ZERO_ID, seq=1, prev=ZERO_ID, ts=T0, body=Genesis("x" * 9000, 1, 0, 0, 0, 1)
        )


def test_oversized_garbage_is_too_large_not_another_error() -> None:
    with pytest.raises(TooLarge):
        Event.decode(b"\xff" * (MAX_EVENT_BYTES + 1))


# --- body schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_valid_bodies_decode(kind: str) -> None:
    body = decode_body(kind, BODIES[kind])
    assert isinstance(body, BODY_TYPES[kind])
    assert body.to_cbor() == BODIES[kind]


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_extra_field(kind: str) -> None:
    for extra in ("extra", "", "Name", "name2"):
        with pytest.raises(MalformedEvent):
            decode_body(kind, BODIES[kind] | {extra: 1})


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k in sorted(BODIES) for f in BODIES[k]])
def test_missing_field(kind: str, field: str) -> None:
    body = {k: v for k, v in BODIES[kind].items() if k != field}
    with pytest.raises(MalformedEvent):
        decode_body(kind, body)


def test_empty_body() -> None:
    for kind in BODIES:
        with pytest.raises(MalformedEvent):
            decode_body(kind, {})


#: Field shapes: each field's valid value is in BODIES; these are values of other CBOR types.
FIELD_SHAPES: dict[str, str] = {
    "name": "text",
    "total": "uint",
    "weekly_flow": "uint",
    "housing_credit": "uint",
    "investment_pool": "uint",
    "period_s": "uint",
    "node": "bytes32",
    "to": "bytes32",
    "amount": "uint",
    "purpose": "text",
    "memo": "text",
    "send": "bytes32",
    "sender": "bytes32",
    "send_seq": "uint",
    "channel": "text",
    "priority": "uint",
    "content": "text",
}
WRONG_TYPES: dict[str, list[CborValue]] = {
    "text": [None, True, 1, b"social", ["social"], {"a": "b"}],
    "uint": [None, True, False, "3", b"\x03", [3], {"a": 3}, -1],
    "bytes32": [None, True, 1, "x" * 32, b"x" * 31, b"x" * 33, b"", [b"x" * 32]],
}


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        (kind, field, value)
        for kind in sorted(BODIES)
        for field in BODIES[kind]
        for value in WRONG_TYPES[FIELD_SHAPES[field]]
    ],
    ids=repr,
)
def test_wrong_type(kind: str, field: str, value: CborValue) -> None:
    with pytest.raises(MalformedEvent):
        decode_body(kind, BODIES[kind] | {field: value})


@pytest.mark.parametrize(
    ("kind", "field", "value", "ok"),
    [
        ("post", "priority", 0, False),
        ("post", "priority", 1, True),
        ("post", "priority", 5, True),
        ("post", "priority", 6, False),
        ("post", "priority", (1 << 64) - 1, False),
        ("post", "priority", -(1 << 64), False),
        ("send", "amount", 0, False),
        ("send", "amount", 1, True),
        ("send", "amount", MAX_AMOUNT, True),
        ("send", "amount", MAX_AMOUNT + 1, False),
        ("claim", "amount", 0, False),
        ("claim", "send_seq", 0, False),
        ("claim", "send_seq", (1 << 63) - 1, True),
        ("claim", "send_seq", 1 << 63, False),
        ("genesis", "total", 0, False),
        ("genesis", "total", MAX_AMOUNT, True),
        ("genesis", "weekly_flow", 0, True),
        ("genesis", "weekly_flow", MAX_AMOUNT + 1, False),
        ("genesis", "period_s", 0, False),
        ("genesis", "period_s", 10 * 365 * 86_400, True),
        ("genesis", "period_s", 10 * 365 * 86_400 + 1, False),
    ],
    ids=repr,
)
def test_integer_ranges(kind: str, field: str, value: int, ok: bool) -> None:
    body = BODIES[kind] | {field: value}
    if ok:
        assert decode_body(kind, body).to_cbor() == body
    else:
        with pytest.raises(MalformedEvent):
            decode_body(kind, body)


def _utf8_of_length(n: int, char: str) -> str:
    """Text of exactly n UTF-8 bytes made of ``char`` and ASCII padding."""
    width = len(char.encode())
    return char * (n // width) + "x" * (n % width)


@pytest.mark.parametrize(
    ("kind", "field", "limit", "allow_empty"),
    [
        ("post", "content", MAX_POST_CONTENT_BYTES, False),
        ("post", "channel", MAX_CHANNEL_BYTES, False),
        ("send", "memo", MAX_MEMO_BYTES, True),
        ("enroll", "name", MAX_NAME_BYTES, True),
        ("genesis", "name", MAX_NAME_BYTES, True),
    ],
)
def test_text_limits_count_utf8_bytes(kind: str, field: str, limit: int, allow_empty: bool) -> None:
    chars = ("a",) if field == "channel" else ("a", "\u00e9", "\u2764", "\U0001d11e")
    for char in chars:
        at_limit = _utf8_of_length(limit, char)
        assert decode_body(kind, BODIES[kind] | {field: at_limit}).to_cbor()[field] == at_limit
        over = at_limit + char
        assert len(over) <= limit + 1  # multi-byte text is over the byte limit, not the char limit
        with pytest.raises(MalformedEvent):
            decode_body(kind, BODIES[kind] | {field: over})
    if allow_empty:
        assert decode_body(kind, BODIES[kind] | {field: ""}).to_cbor()[field] == ""
    else:
        with pytest.raises(MalformedEvent):
            decode_body(kind, BODIES[kind] | {field: ""})


def test_post_content_over_4096_bytes_with_few_characters() -> None:
    content = "\U0001d11e" * 1025  # 1,025 characters, 4,100 bytes
    with pytest.raises(MalformedEvent):
        decode_body("post", BODIES["post"] | {"content": content})


@pytest.mark.parametrize(
    ("channel", "ok"),
    [
        ("billboard", True),
        ("social", True),
        ("media", True),
        ("direct", True),
        ("0", True),
        ("a-b_c9", True),
        ("x" * MAX_CHANNEL_BYTES, True),
        ("", False),
        ("x" * (MAX_CHANNEL_BYTES + 1), False),
        ("Social", False),
        ("-social", False),
        ("_social", False),
        ("so cial", False),
        ("so.cial", False),
        ("so/cial", False),
        ("social\n", False),
        ("\nsocial", False),
        ("social ", False),
        ("soci\u00e4l", False),
        ("\uff53ocial", False),  # fullwidth s
        ("social\x00", False),
    ],
    ids=repr,
)
def test_channel_names(channel: str, ok: bool) -> None:
    assert valid_channel(channel) is ok
    body = BODIES["post"] | {"channel": channel}
    if ok:
        assert decode_body("post", body).to_cbor() == body
    else:
        with pytest.raises(MalformedEvent):
            decode_body("post", body)


@pytest.mark.parametrize("purpose", [*sorted(SEND_PURPOSES), "gift", "", "Transfer", "x" * 17])
def test_send_purposes(purpose: str) -> None:
    body = BODIES["send"] | {"purpose": purpose}
    if purpose in SEND_PURPOSES:
        decode_body("send", body)
    else:
        with pytest.raises(MalformedEvent):
            decode_body("send", body)


def test_send_to_self_is_not_an_events_layer_error() -> None:
    """The events layer accepts it; the ledger refuses it (a ledger rule, not a schema rule)."""
    body = BODIES["send"] | {"to": ALICE.public}
    assert decode_body("send", body) == Send(ALICE.public, 1_050, "transfer", "rent")

    node = Driven()
    enrolment = Event.create(
        ALICE, NETWORK, seq=1, prev=ZERO_ID, ts=T0, body=Enroll("", NODE.public)
    )
    to_self = Event.create(
        ALICE,
        NETWORK,
        seq=2,
        prev=enrolment.id,
        ts=T0 + 1,
        body=Send(ALICE.public, 1, "transfer", ""),
    )
    node.feed([enrolment, to_self])
    assert node.rejected_codes() == ["malformed_event"]


def test_claim_of_self_is_not_an_events_layer_error() -> None:
    body = BODIES["claim"] | {"sender": ALICE.public}
    assert isinstance(decode_body("claim", body), Claim)


def test_body_kind_must_match_the_schema() -> None:
    """A body valid for one kind is malformed under another kind's name."""
    for kind in BODIES:
        for other, body in BODIES.items():
            if other != kind:
                with pytest.raises(MalformedEvent):
                    decode_body(kind, body)


def test_map_keys_in_the_body_must_be_canonical() -> None:
    good = signed_raw(BODIES["post"])
    # Swap the order of two body keys in the encoding: same map, non-canonical bytes.
    content = codec.encode("content") + codec.encode(BODIES["post"]["content"])
    channel = codec.encode("channel") + codec.encode("social")
    assert content in good
    assert channel in good
    swapped = good.replace(channel + content, content + channel)
    assert swapped != good
    with pytest.raises(DecodeError):
        Event.decode(swapped)


# --- found by these tests, fixed ------------------------------------------------------------------


def test_version_true_is_not_version_1() -> None:
    """CBOR true (0xf5) is not version 1, although True == 1 in Python: a second encoding of
    the same event (another id) must not decode."""
    raw = signed_raw(BODIES["post"], version=True)
    assert raw[1] == 0xF5
    with pytest.raises(DecodeError):
        Event.decode(raw).check_signature(NETWORK)


@pytest.mark.parametrize(
    ("body", "seq", "prev", "ts"),
    [
        (Post("social", 3, "x" * (MAX_POST_CONTENT_BYTES + 1)), 2, PREV, T0),
        (Post("Not A Channel", 3, "hello"), 2, PREV, T0),
        (Post("social", 9, "hello"), 2, PREV, T0),
        (Post("social", 3, ""), 2, PREV, T0),
        (Send(BOB.public, 0, "gift", ""), 2, PREV, T0),
        (Enroll("alice", b"short"), 1, ZERO_ID, T0),
        (Post("social", 3, "hello"), 1, PREV, T0),
        (Post("social", 3, "hello"), 2, PREV, -1),
    ],
    ids=["content", "channel", "priority", "empty", "send", "node", "prev", "ts"],
)
def test_create_refuses_what_decode_refuses(body: Body, seq: int, prev: bytes, ts: int) -> None:
    """This node never signs (so never stores or gossips) an event its peers would refuse."""
    with pytest.raises(LiberationError):
        Event.create(ALICE, NETWORK, seq=seq, prev=prev, ts=ts, body=body)
