"""Fuzz inputs: valid seeds, CBOR-aware garbage and mutations of valid frames and events.

Every generator takes a `random.Random`, so a run is replayed exactly from its seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple

from protocol import codec
from protocol.codec import CborValue
from protocol.errors import CloseReason
from protocol.events import ZERO_ID, Claim, Enroll, Event, Post, Send
from protocol.frames import (
    FIELD_COUNTS,
    AnyFrame,
    Bye,
    Credit,
    Error,
    Events,
    FeedHead,
    Fork,
    GetRange,
    Have,
    Heads,
    Hello,
    LinkNeighbour,
    LinkState,
    PeerAddress,
    Peers,
    Ping,
    Pong,
    Prune,
    Routed,
    Signal,
    Want,
    encode_frame,
    heads_digest,
)
from protocol.limits import MAX_FRAME_BYTES
from tests.protocol.helpers import GENESIS, NETWORK, NODE, POOL, T0, key

ALICE, BOB = key("fuzz-alice"), key("fuzz-bob")


def seed_events() -> list[Event]:
    """Valid signed events of every kind, short and long."""
    enrol = Event.create(
        ALICE, NETWORK, seq=1, prev=ZERO_ID, ts=T0, body=Enroll("alice", NODE.public)
    )
    send = Event.create(
        ALICE,
        NETWORK,
        seq=2,
        prev=enrol.id,
        ts=T0 + 1,
        body=Send(BOB.public, 1_050, "transfer", ""),
    )
    claim = Event.create(
        BOB, NETWORK, seq=2, prev=enrol.id, ts=T0 + 2, body=Claim(send.id, ALICE.public, 2, 1_050)
    )
    post = Event.create(
        ALICE, NETWORK, seq=3, prev=send.id, ts=T0 + 3, body=Post("social", 5, "hi \u2764")
    )
    long_post = Event.create(
        BOB, NETWORK, seq=3, prev=claim.id, ts=T0 + 4, body=Post("billboard", 1, "x" * 600)
    )
    pool_send = Event.create(
        POOL,
        NETWORK,
        seq=2,
        prev=GENESIS.id,
        ts=T0 + 5,
        body=Send(ALICE.public, 1, "housing", "p:1"),
    )
    return [GENESIS, enrol, send, claim, post, long_post, pool_send]


def seed_frames(events: list[Event]) -> list[AnyFrame]:
    """Valid frames of every type."""
    ids = [e.id for e in events]
    heads = tuple(FeedHead(e.author, e.seq, e.id) for e in events)
    return [
        Hello.create(
            NODE,
            network_id=NETWORK,
            genesis=GENESIS.raw,
            nonce=bytes(16),
            local_fingerprint="sha-256 " + ":".join(["0F"] * 32),
            remote_fingerprint="sha-256 " + ":".join(["F0"] * 32),
            name="fuzz",
            mesh_port=7_777,
            credit=512,
        ),
        Events(tuple(e.raw for e in events[:3]), reply=False),
        Events((events[4].raw,), reply=True),
        Have(tuple(ids)),
        Want(tuple(ids[:2]), graft=True),
        Heads(heads_digest([(h.author, h.seq, h.head_id) for h in heads]), heads, True, 0, True),
        Heads(bytes(32), (), False, 0, True),
        GetRange(ALICE.public, 1, 256),
        Ping(1 << 40),
        Pong(7),
        Routed.create(
            NODE,
            network_id=NETWORK,
            dst=ALICE.public,
            ttl=6,
            msg_id=bytes(16),
            kind="direct",
            payload=b"\x00\xff",
        ),
        Signal.create(
            NODE,
            recipient=BOB.public,
            ts=T0,
            session=bytes(range(16)),
            kind="answer",
            sdp="v=0\r\ns=-\r\n",
            network_id=NETWORK,
        ),
        Bye(CloseReason.BANNED, "bye"),
        Prune(),
        Credit(1 << 20),
        Fork(events[2].raw, events[3].raw),
        LinkState.create(
            NODE,
            seq=9,
            ts=T0,
            neighbours=(LinkNeighbour(ALICE.public, 70_000, 5), LinkNeighbour(BOB.public, 10, 0)),
            network_id=NETWORK,
        ),
        Peers(
            (PeerAddress(ALICE.public, "10.0.0.2", 7_777), PeerAddress(BOB.public, "fe80::1", 9))
        ),
        Error("unexpected_frame", "not now"),
    ]


EVENT_SEEDS: list[bytes] = [e.raw for e in seed_events()]
FRAME_SEEDS: list[bytes] = [encode_frame(f) for f in seed_frames(seed_events())]

# --- CBOR structure ---------------------------------------------------------------------------


class Head(NamedTuple):
    """One CBOR head found in a valid encoding."""

    offset: int
    major: int
    argument: int
    size: int


def scan_heads(raw: bytes) -> list[Head]:
    """Every head of a valid encoding, in order (containers before their items)."""
    heads: list[Head] = []
    pos = 0
    pending = 1  # items still to read at the current point of the walk
    stack: list[int] = []
    while pending or stack:
        if not pending:
            pending = stack.pop()
            continue
        pending -= 1
        initial = raw[pos]
        major, info = initial >> 5, initial & 0x1F
        if major == 7:
            heads.append(Head(pos, major, info, 1))
            pos += 1
            continue
        size = {24: 2, 25: 3, 26: 5, 27: 9}.get(info, 1)
        argument = info if size == 1 else int.from_bytes(raw[pos + 1 : pos + size], "big")
        heads.append(Head(pos, major, argument, size))
        pos += size
        if major in (2, 3):
            pos += argument
        elif major in (4, 5):
            stack.append(pending)
            pending = argument * (2 if major == 5 else 1)
    return heads


def encode_head(major: int, argument: int, size: int | None = None) -> bytes:
    """A head with ``argument`` in the shortest form, or in ``size`` bytes (maybe non-shortest)."""
    shortest = 1 if argument < 24 else 2 if argument < 1 << 8 else 3 if argument < 1 << 16 else 5
    if argument >= 1 << 32:
        shortest = 9
    if size is None or size < shortest:
        size = shortest
    if size == 1:
        return bytes([major << 5 | argument])
    info = {2: 24, 3: 25, 5: 26, 9: 27}[size]
    return bytes([major << 5 | info]) + argument.to_bytes(size - 1, "big")


# --- generators -------------------------------------------------------------------------------

#: Heads at the edges of each size class, container heads, break and the simple values.
INTERESTING_BYTES = bytes.fromhex(
    "00 01 17 18 19 1a 1b 1f 20 40 58 5f 60 78 7f 80 88 98 9f a0 b8 bf c0 f4 f5 f6 f7 f9 ff"
)
INTERESTING_ARGUMENTS = [0, 1, 7, 8, 23, 24, 255, 256, 65_535, 65_536, MAX_FRAME_BYTES + 1]
INTERESTING_ARGUMENTS += [2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1]


def random_length(rng: random.Random) -> int:
    """Mostly short, sometimes long, rarely over the frame limit."""
    roll = rng.random()
    if roll < 0.5:
        return rng.randrange(0, 16)
    if roll < 0.9:
        return rng.randrange(16, 256)
    if roll < 0.999:
        return rng.randrange(256, 4_096)
    return rng.randrange(MAX_FRAME_BYTES - 8, MAX_FRAME_BYTES + 8)


def random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(random_length(rng))


def random_tokens(rng: random.Random) -> bytes:
    """A stream of plausible CBOR heads and payloads that rarely adds up to a valid item."""
    out = bytearray()
    for _ in range(rng.randrange(1, 40)):
        major = rng.randrange(8)
        if major == 7:
            out.append(0xE0 | rng.choice([20, 21, 22, 23, 24, 25, 26, 27, 31, rng.randrange(32)]))
            continue
        argument = rng.choice(INTERESTING_ARGUMENTS) if rng.random() < 0.2 else rng.randrange(40)
        out += encode_head(major, argument, rng.choice([None, None, None, 2, 3, 5, 9]))
        if major in (2, 3) and argument < 64:
            out += rng.randbytes(argument)
    return bytes(out)


def random_value(rng: random.Random, depth: int = 0) -> CborValue:
    """A random value of the codec's subset, nested so that frames stay within MAX_DEPTH (the
    encoder refuses deeper values; byte mutations and the corpus cover deep nesting)."""
    roll = rng.random()
    if depth < 5 and roll < 0.15:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if depth < 5 and roll < 0.25:
        return {
            rng.choice(["", "a", "b", "aa", "name", "to", "seq", "\u00e9"]): random_value(
                rng, depth + 1
            )
            for _ in range(rng.randrange(4))
        }
    leaves: list[Callable[[], CborValue]] = [
        lambda: rng.choice(INTERESTING_ARGUMENTS),
        lambda: -1 - rng.choice(INTERESTING_ARGUMENTS),
        lambda: rng.randrange(-300, 300),
        lambda: rng.randbytes(rng.choice([0, 1, 15, 16, 31, 32, 33, 63, 64, 65])),
        lambda: rng.choice(["", "post", "offer", "x" * 65, "\u2764", "social", "transfer"]),
        lambda: rng.choice([True, False, None]),
    ]
    return rng.choice(leaves)()


def random_structured(rng: random.Random) -> bytes:
    """Frame- and event-shaped arrays with random fields: reaches the field readers."""
    roll = rng.random()
    if roll < 0.6:
        frame_type = rng.choice(list(FIELD_COUNTS))
        count = FIELD_COUNTS[frame_type] + (rng.choice([-1, 1]) if rng.random() < 0.1 else 0)
        value: CborValue = [1, frame_type, *(random_value(rng) for _ in range(max(count, 0)))]
    elif roll < 0.9:
        kind = rng.choice(["genesis", "enroll", "send", "claim", "post", "other"])
        seq = rng.choice([1, 2, 0, 2**63])
        prev = ZERO_ID if seq == 1 else rng.randbytes(32)
        body = random_value(rng) if rng.random() < 0.2 else _random_body(rng)
        value = [1, ALICE.public, seq, prev, T0, kind, body, rng.randbytes(64)]
    else:
        value = random_value(rng)
    return codec.encode(value)


def _random_body(rng: random.Random) -> dict[str, CborValue]:
    names = ["name", "node", "to", "amount", "purpose", "memo", "send", "sender", "send_seq"]
    names += ["channel", "priority", "content", "total", "weekly_flow", "period_s"]
    return {name: random_value(rng, 9) for name in rng.sample(names, rng.randrange(7))}


# --- mutations --------------------------------------------------------------------------------


def lie_about_a_length(rng: random.Random, raw: bytes) -> bytes:
    """Rewrite one head of a valid encoding: another argument, a longer form, or another type."""
    heads = [h for h in scan_heads(raw) if h.major != 7] or scan_heads(raw)
    head = rng.choice(heads)
    major, argument = head.major, head.argument
    roll = rng.random()
    size: int | None = None
    if roll < 0.5:
        argument = rng.choice(
            [argument + 1, argument - 1, argument * 2, argument + 1_000, *INTERESTING_ARGUMENTS]
        )
        argument = min(max(argument, 0), 2**64 - 1)
    elif roll < 0.75:
        size = rng.choice([s for s in (2, 3, 5, 9) if argument < 1 << (8 * (s - 1))] or [9])
    else:
        major = rng.randrange(7)
    if major == 7:
        return raw[: head.offset] + bytes([rng.randrange(256)]) + raw[head.offset + head.size :]
    return raw[: head.offset] + encode_head(major, argument, size) + raw[head.offset + head.size :]


def mutate(rng: random.Random, raw: bytes, others: list[bytes]) -> bytes:
    """One to four stacked mutations of ``raw`` (a valid encoding)."""
    data = bytearray(lie_about_a_length(rng, raw) if rng.random() < 0.25 else raw)
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
        n = len(data)
        op = rng.randrange(9)
        pos = rng.randrange(n + 1)
        if op == 0 and n:  # flip one to three bits
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # an interesting byte
            data[min(pos, n - 1)] = rng.choice(INTERESTING_BYTES)
        elif op == 2 and n:  # any byte
            data[min(pos, n - 1)] = rng.randrange(256)
        elif op == 3:  # truncate
            del data[pos:]
        elif op == 4:  # delete a span
            del data[pos : pos + rng.randrange(1, 9)]
        elif op == 5:  # insert random bytes
            data[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif op == 6 and n:  # duplicate a span, just after itself or elsewhere
            start = rng.randrange(n)
            span = data[start : start + rng.randrange(1, 65)]
            at = start + len(span) if rng.random() < 0.5 else pos
            data[at:at] = span
        elif op == 7:  # splice with another valid input
            other = rng.choice(others)
            data = data[:pos] + other[rng.randrange(len(other) + 1) :]
        else:  # append trailing bytes
            data += rng.randbytes(rng.randrange(1, 4))
    return bytes(data)


def mutated_frame(rng: random.Random) -> bytes:
    return mutate(rng, rng.choice(FRAME_SEEDS), FRAME_SEEDS)


def mutated_event(rng: random.Random) -> bytes:
    """A mutated event, alone or carried in a frame (as the receive path meets it)."""
    raw = mutate(rng, rng.choice(EVENT_SEEDS), EVENT_SEEDS)
    roll = rng.random()
    if roll < 0.7:
        return raw
    if roll < 0.9:
        return encode_frame(Events((raw,), reply=rng.random() < 0.5))
    return encode_frame(Fork(raw, rng.choice(EVENT_SEEDS)))


#: Input families and their share of the iterations.
FAMILIES: dict[str, tuple[float, Callable[[random.Random], bytes]]] = {
    "random-bytes": (0.15, random_bytes),
    "cbor-tokens": (0.10, random_tokens),
    "structured": (0.15, random_structured),
    "mutated-frames": (0.35, mutated_frame),
    "mutated-events": (0.25, mutated_event),
}
