"""h11's fuzz invariant for every decoder: for any bytes, a value or a typed error, nothing else.

- ``codec.decode``: a value or `DecodeError`; and a value only for a canonical encoding.
- ``frames.decode_frame``: a frame or a `RemoteProtocolError`; oversized input is `TooLarge`.
- ``Event.decode`` then ``check_signature``: an event or a `LiberationError`.

And no forgery: an event or a signed frame that verifies is one the seeds signed (a ROUTED frame
may differ in its unsigned ``ttl`` and ``path``), since the fuzzer holds no key.

``LIBERATION_FUZZ_ITERATIONS`` (default 100,000) inputs per run, shared among the input families;
``LIBERATION_FUZZ_SEED`` replays a run (every failure prints its seed). Inputs that ever broke the
invariant go to ``corpus/`` (hex, ``#`` comments) and are replayed by `test_corpus`.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from protocol import codec
from protocol.errors import (
    CloseReason,
    DecodeError,
    LiberationError,
    RemoteProtocolError,
    TooLarge,
)
from protocol.events import Event
from protocol.frames import (
    AnyFrame,
    Bye,
    Events,
    Fork,
    Hello,
    LinkState,
    Routed,
    Signal,
    decode_frame,
    encode_frame,
)
from protocol.limits import MAX_EVENT_BYTES, MAX_FRAME_BYTES
from tests.fuzz.generate import EVENT_SEEDS, FAMILIES, FRAME_SEEDS
from tests.protocol.helpers import NETWORK

ITERATIONS = int(os.environ.get("LIBERATION_FUZZ_ITERATIONS", "100000"))
SEED = int(os.environ.get("LIBERATION_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
CORPUS = Path(__file__).parent / "corpus"
T = TypeVar("T")
E = TypeVar("E", bound=Exception)


def signed_core(frame: AnyFrame) -> object:
    """What a signed frame's signature vouches for (None for an unsigned frame type)."""
    if isinstance(frame, Routed):
        return (frame.src, frame.dst, frame.msg_id, frame.kind, frame.payload, frame.sig)
    if isinstance(frame, Hello | Signal | LinkState):
        return frame
    return None


#: Everything the seeds signed: nothing else may ever verify.
SIGNED_EVENTS = frozenset(EVENT_SEEDS)
SIGNED_FRAMES = frozenset(signed_core(decode_frame(raw)) for raw in FRAME_SEEDS) - {None}


class Violation(Exception):
    """A decoder broke the invariant for one input."""


def _outcome(decoder: str, call: Callable[[], T], allowed: type[E]) -> T | E:
    """The value ``call`` returns, or the allowed error it raised; anything else is a Violation."""
    try:
        return call()
    except allowed as exc:
        return exc
    except Exception as exc:
        raise Violation(f"{decoder} raised {type(exc).__name__}: {exc}") from exc


def check_event(data: bytes, outcomes: Counter[str] | None = None) -> None:
    """Event.decode and the signature check: an event or a LiberationError."""

    def decode_and_verify() -> Event:
        event = Event.decode(data)
        event.check_signature(NETWORK)
        return event

    result = _outcome("Event.decode", decode_and_verify, LiberationError)
    if isinstance(result, Event):
        if result.raw != data or result.id != hashlib.sha256(data).digest():
            raise Violation("Event.decode: raw or id does not match the input")
        if data not in SIGNED_EVENTS:
            raise Violation("forgery: an event nobody signed passed the signature check")
    elif len(data) > MAX_EVENT_BYTES and type(result) is not TooLarge:
        raise Violation(f"Event.decode: oversized input raised {type(result).__name__}")
    if outcomes is not None:
        outcomes[f"event:{_code(result)}"] += 1


def check(data: bytes, outcomes: Counter[str] | None = None) -> None:
    """Run every decoder on ``data`` and check the invariant and the cheap oracles."""
    value = _outcome("codec.decode", lambda: codec.decode(data), DecodeError)
    if not isinstance(value, DecodeError) and codec.encode(value) != data:
        raise Violation("codec.decode accepted a non-canonical encoding")

    frame = _outcome("decode_frame", lambda: decode_frame(data), RemoteProtocolError)
    if isinstance(frame, RemoteProtocolError):
        if len(data) > MAX_FRAME_BYTES and type(frame) is not TooLarge:
            raise Violation(f"decode_frame: oversized input raised {type(frame).__name__}")
        if isinstance(value, DecodeError) and not isinstance(frame, DecodeError):
            raise Violation("decode_frame: bytes the codec refuses were not a DecodeError")
    else:
        # A frame is read back exactly, except a BYE whose unknown reason is read as NORMAL.
        lossy = isinstance(frame, Bye) and frame.reason == CloseReason.NORMAL
        if not lossy and encode_frame(frame) != data:
            raise Violation("decode_frame: the frame does not re-encode to the input")
        if (
            isinstance(frame, Hello | Signal | Routed | LinkState)
            and frame.signature_valid()
            and signed_core(frame) not in SIGNED_FRAMES
        ):
            raise Violation("forgery: a signed frame nobody signed passed the signature check")
        # The receive path decodes the events a frame carries.
        if isinstance(frame, Events):
            for raw in frame.events:
                check_event(raw, outcomes)
        elif isinstance(frame, Fork):
            check_event(frame.event_a, outcomes)
            check_event(frame.event_b, outcomes)
        elif isinstance(frame, Hello) and frame.genesis:
            check_event(frame.genesis, outcomes)
    if outcomes is not None:
        outcomes[f"codec:{_code(value)}"] += 1
        outcomes[f"frame:{_code(frame)}"] += 1

    check_event(data, outcomes)


def _code(result: object) -> str:
    return result.code if isinstance(result, LiberationError) else "ok"


def _report(family: str, index: int, data: bytes, exc: Violation, out: Path) -> str:
    out.write_bytes(data)
    shown = data.hex() if len(data) <= 2_048 else data[:2_048].hex() + "..."
    return (
        f"{exc}\n  family={family} iteration={index} LIBERATION_FUZZ_SEED={SEED}\n"
        f"  input ({len(data)} bytes, saved to {out}): {shown}\n"
        f"  add it to {CORPUS}/ as a .hex file so that it is replayed on every run"
    )


def _share(family: str) -> int:
    """This family's part of ITERATIONS; the parts add up to ITERATIONS exactly."""
    names = list(FAMILIES)
    counts = [int(ITERATIONS * FAMILIES[name][0]) for name in names]
    counts[-1] += ITERATIONS - sum(counts)
    return counts[names.index(family)]


# --- the fuzz run ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz(family: str, tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}:{family}")
    generate = FAMILIES[family][1]
    count = _share(family)
    outcomes: Counter[str] = Counter()
    start = time.perf_counter()
    for index in range(count):
        data = generate(rng)
        try:
            check(data, outcomes)
        except Violation as exc:
            pytest.fail(_report(family, index, data, exc, tmp_path / "failing-input.bin"))
    elapsed = time.perf_counter() - start
    print(f"{family}: {count} inputs in {elapsed:.2f}s, seed {SEED}: {dict(outcomes)}")
    if count >= 2_000:
        # The generators must reach past the first checks, or the run proves little.
        assert len(outcomes) >= 3, outcomes
        if family.startswith("mutated"):
            assert outcomes["codec:decode_error"] > 0, outcomes
            assert outcomes["frame:ok"] + outcomes["event:ok"] > 0, outcomes
            assert len(outcomes) >= 6, outcomes


@pytest.mark.parametrize("raw", FRAME_SEEDS, ids=lambda raw: f"frame-{raw[1]}-{len(raw)}")
def test_valid_frame_whole_and_every_prefix(raw: bytes) -> None:
    frame = decode_frame(raw)
    assert encode_frame(frame) == raw
    check(raw)
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            decode_frame(raw[:cut])
        check(raw[:cut])


@pytest.mark.parametrize("raw", EVENT_SEEDS, ids=lambda raw: f"event-{len(raw)}")
def test_valid_event_whole_and_every_prefix(raw: bytes) -> None:
    event = Event.decode(raw)
    event.check_signature(NETWORK)
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            Event.decode(raw[:cut])
        check(raw[:cut])


def test_oversized_inputs_are_too_large() -> None:
    for size in (MAX_EVENT_BYTES + 1, MAX_FRAME_BYTES + 1, 4 * MAX_FRAME_BYTES):
        for fill in (b"\x00", b"\x9b", b"\xff"):
            check(fill * size)


# --- the kept corpus ------------------------------------------------------------------------------


def read_corpus_file(path: Path) -> bytes:
    """Hex digits of a corpus file; ``#`` starts a comment, whitespace is ignored."""
    lines = (line.split("#", 1)[0] for line in path.read_text().splitlines())
    return bytes.fromhex("".join("".join(lines).split()))


CORPUS_FILES = sorted(CORPUS.glob("*.hex"))


def test_corpus_is_kept() -> None:
    assert len(CORPUS_FILES) >= 10
    for path in CORPUS_FILES:
        assert path.read_text().startswith("#"), f"{path.name}: say why the input is kept"
        read_corpus_file(path)


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda path: path.stem)
def test_corpus(path: Path) -> None:
    data = read_corpus_file(path)
    try:
        check(data)
    except Violation as exc:
        pytest.fail(f"{path.name}: {exc}")
